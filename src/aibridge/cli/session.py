"""The stored CLI session (``aibridge login``): server URL and token in ``$XDG_CONFIG_HOME/aibridge/session``.

The REST client commands and ``aibridge env`` take ``--url`` / ``--token`` (or ``CODER_URL`` /
``CODER_SESSION_TOKEN``) first and fall back on the stored session. The stored token is only ever
sent to the stored URL: with another ``--url`` it stays home.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from aibridge.cli.options import fail

F = TypeVar("F", bound=Callable[..., Any])
NOT_SIGNED_IN = "run `aibridge login URL`, or pass --url and --token (CODER_URL, CODER_SESSION_TOKEN)"


@dataclass(frozen=True)
class Session:
    url: str
    token: str


def session_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aibridge" / "session"


def load() -> Session | None:
    """The stored session, or None (no file, or one this version cannot read)."""
    try:
        doc = json.loads(session_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("url"), str) or not isinstance(doc.get("token"), str):
        return None
    return Session(doc["url"], doc["token"])


def save(session: Session) -> Path:
    """Written readable by its owner only (0600 in a 0700 directory): it holds a bearer token."""
    path = session_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)       # an older file may have been created wider
        json.dump({"url": session.url, "token": session.token}, handle)
        handle.write("\n")
    return path


def remove() -> None:
    with contextlib.suppress(FileNotFoundError):
        session_path().unlink()


def credentials(url: str | None, token: str | None) -> tuple[str, str]:
    """--url/--token (or their variables), else the stored session's; exits with one line when missing."""
    stored = load()
    if stored is not None:
        url = url or stored.url
        if not token and url.rstrip("/") == stored.url.rstrip("/"):
            token = stored.token
    if not url:
        fail(f"no server URL: {NOT_SIGNED_IN}")
    if not token:
        fail(f"no API token for {url}: {NOT_SIGNED_IN}")
    return url.rstrip("/"), token


def server_options(func: F) -> F:
    """--url and --token of a REST client command, resolved with ``credentials`` before it runs."""

    @functools.wraps(func)
    def resolved(*args: Any, url: str | None = None, token: str | None = None, **kwargs: Any) -> Any:
        url, token = credentials(url, token)
        return func(*args, url=url, token=token, **kwargs)

    wrapped = click.option("--token", envvar="CODER_SESSION_TOKEN",
                           help="API token [env: CODER_SESSION_TOKEN; default: `aibridge login`'s].")(resolved)
    wrapped = click.option("--url", envvar="CODER_URL",
                           help="Server URL [env: CODER_URL; default: `aibridge login`'s].")(wrapped)
    return wrapped  # type: ignore[return-value]
