"""Configured credentials kept out of what the bridge relays and logs.

An upstream (a compatible gateway, a proxy) may echo the key it was given in an error body; a
library may put a URL with its password in an exception. Every configured provider key (each
key of each key pool, Bedrock's access key, secret and session token) and the MCP servers'
credentials are registered once at start (``register``); then

- an upstream answer with status >= 400 is relayed with each of them replaced (``Scrubbed``,
  used by ``diagnostics.Diagnosed`` for every route and door: intercepted, passed through,
  blocking or not). Successful answers are not scanned: the hot path stays as it is;
- every log line is written with them replaced (the formatters in ``observability/logging.py``).

A BYOK request's own credential (``credentials.py``) is a secret too, for that request only:
``routing.py`` runs the request inside ``request_secrets``, and ``current()`` then includes it,
so the relayed error, ``flow.error`` (what is recorded) and every log line written while the
request runs have it replaced by ``[REDACTED:credential]``.

Scanning is a few substring checks (``in``); the replacement runs only when one matched.
Values shorter than ``MIN_LENGTH`` are not registered: replacing them would garble text without
protecting anything.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, runtime_checkable

from aibridge.bridge.providers.base import UpstreamResponse

PROVIDER_KEY = "[REDACTED:provider_key]"
CREDENTIAL = "[REDACTED:credential]"
MIN_LENGTH = 8


@runtime_checkable
class HasSecrets(Protocol):
    def secrets(self) -> list[str]:
        """The credentials this provider sends upstream (never shown, relayed or logged)."""


class Scrubber:
    """Replaces registered secrets (and their JSON-escaped spellings) by a placeholder each."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self._given = dict(secrets or {})
        found: dict[str, str] = {}
        for secret, placeholder in (secrets or {}).items():
            if len(secret) >= MIN_LENGTH:
                found[secret] = placeholder
                found.setdefault(secret.replace("/", "\\/"), placeholder)    # as some JSON encoders write it
        ordered = sorted(found, key=len, reverse=True)      # the longest first: one never hides part of another
        self._texts = tuple(ordered)
        self._bytes = tuple(s.encode() for s in ordered)
        self._placeholders = found
        self._text_pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._bytes_pattern = re.compile(b"|".join(map(re.escape, self._bytes))) if ordered else None

    def including(self, secrets: Iterable[str], placeholder: str) -> Scrubber:
        """This scrubber with ``secrets`` added (its own spellings of them win)."""
        return Scrubber({**{s: placeholder for s in secrets}, **self._given})

    def __bool__(self) -> bool:
        return bool(self._texts)

    def text(self, value: str) -> str:
        if self._text_pattern is None or not any(s in value for s in self._texts):
            return value
        return self._text_pattern.sub(lambda m: self._placeholders[m[0]], value)

    def bytes(self, value: bytes) -> bytes:
        if self._bytes_pattern is None or not any(s in value for s in self._bytes):
            return value
        return self._bytes_pattern.sub(lambda m: self._placeholders[m[0].decode()].encode(), value)


_current = Scrubber()
# A BYOK request's own scrubber (the registered secrets and the user's credential), while it runs.
_request: ContextVar[Scrubber | None] = ContextVar("aibridge_request_scrubber", default=None)


def register(secrets: Mapping[str, str]) -> Scrubber:
    """Make ``secrets`` (value → placeholder) the ones every relay and log line hides."""
    global _current
    _current = Scrubber(secrets)
    return _current


def current() -> Scrubber:
    return _request.get() or _current


@contextmanager
def request_secrets(secrets: Iterable[str]) -> Iterator[None]:
    """Inside this block (one request's task), ``secrets`` are scrubbed like the configured keys."""
    token = _request.set(_current.including(secrets, CREDENTIAL))
    try:
        yield
    finally:
        _request.reset(token)


def provider_secrets(providers: Iterable[object]) -> dict[str, str]:
    """Every credential of the built providers, for ``register``."""
    return {secret: PROVIDER_KEY for p in providers if isinstance(p, HasSecrets) for secret in p.secrets()}


class Scrubbed:
    """An upstream error answer whose body is read whole and relayed with the secrets replaced
    (error bodies are small; reading them whole means a key cannot hide across two chunks)."""

    __slots__ = ("_body", "_inner", "_scrubber", "headers", "status")

    def __init__(self, inner: UpstreamResponse, scrubber: Scrubber) -> None:
        self._inner = inner
        self._scrubber = scrubber
        self._body: bytes | None = None
        self.status = inner.status
        self.headers: Mapping[str, str] = inner.headers

    async def read(self) -> bytes:
        if self._body is None:
            self._body = self._scrubber.bytes(await self._inner.read())
        return self._body

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        if body := await self.read():
            yield body

    def close(self) -> None:
        self._inner.close()


def scrubbed(response: UpstreamResponse) -> UpstreamResponse:
    """``response`` itself when it succeeded or nothing is registered, else it ``Scrubbed``."""
    scrubber = current()
    if response.status < 400 or not scrubber:
        return response
    return Scrubbed(response, scrubber)
