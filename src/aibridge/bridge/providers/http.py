"""Providers reached over plain HTTP (OpenAI, Anthropic and compatible gateways).

One pooled aiohttp client per provider. The client's headers go upstream minus hop-by-hop
headers and credentials; the central key is added by the concrete provider. The connection
handling (errors → 502/504, the response wrappers) is shared with Bedrock.

Settings of an HTTP provider kind (``HTTPType``): fields ``KEY`` and ``BASE_URL``, and optionally
a pair of single-provider options (``--aibridge-openai-key``, ``--aibridge-openai-base-url``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from aibridge.bridge.apis.base import Api
from aibridge.bridge.credentials import GOVERNANCE_HEADER
from aibridge.bridge.providers.base import Provider, UpstreamError, UpstreamRequest
from aibridge.bridge.providers.keypool import COOLING_STATUSES, KeyPool, split_keys
from aibridge.bridge.providers.registry import ProviderType
from aibridge.bridge.routes import RouteTable
from aibridge.config import OPTIONS_BY_KEY, ProviderConfig, ProviderFields, Settings, legacy_fields, legacy_label

# Never forwarded upstream: hop-by-hop headers, ones aiohttp sets itself, and every credential
# the client might have sent (the user's AI Bridge token must never leave the bridge).
DROPPED_REQUEST_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
    "authorization", "x-api-key", "coder-session-token", "cookie", "api-key", "x-goog-api-key",
    # Which organization and project the central key bills is the operator's choice, not a member's.
    "openai-organization", "openai-project",
    # The bridge token of a BYOK request (credentials.py): never forwarded either.
    "x-coder-ai-governance-token",
})
# Not relayed back: the body is re-framed by our server and already decoded.
DROPPED_RESPONSE_HEADERS = frozenset({
    "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "upgrade",
    "trailer", "set-cookie", "date", "server",
})

# Set only by the bridge (--aibridge-send-actor-headers); a client must not be able to spoof them.
ACTOR_PREFIX = "x-ai-bridge-actor"

CONNECT_TIMEOUT = 10.0
# Streams can pause for minutes while a model thinks; blocking answers can take longer still.
READ_TIMEOUT = 900.0


class _HeaderFilter:
    """Which header names pass, decided once per name as spelled (a request carries a dozen,
    always the same few): a dict lookup instead of ``lower()`` and set lookups per header."""

    __slots__ = ("_passes", "_rule")

    def __init__(self, rule: Callable[[str], bool]) -> None:
        self._rule = rule
        self._passes: dict[str, bool] = {}

    def __call__(self, headers: Mapping[str, str]) -> CIMultiDict[str]:
        passes = self._passes
        if len(passes) > 4096:          # names made up per request: do not grow without bound
            passes.clear()
        return CIMultiDict([(k, v) for k, v in headers.items()
                            if passes.get(k) or (k not in passes and self._learn(k))])

    def _learn(self, name: str) -> bool:
        self._passes[name] = passes = self._rule(name.lower())
        return passes


forwardable_headers = _HeaderFilter(
    lambda name: name not in DROPPED_REQUEST_HEADERS and not name.startswith(ACTOR_PREFIX))
relayable_headers = _HeaderFilter(lambda name: name not in DROPPED_RESPONSE_HEADERS)


def join_url(base: str, tail: str, query: str = "") -> str:
    url = base.rstrip("/") + "/" + tail.lstrip("/")
    return f"{url}?{query}" if query else url


@contextmanager
def reading() -> Iterator[None]:
    """A connection lost (or timed out) while reading an answer becomes a 502."""
    try:
        yield
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise UpstreamError(502, f"upstream connection lost: {describe(exc)}") from exc


class HTTPUpstreamResponse:
    """An aiohttp response seen through the UpstreamResponse protocol."""

    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        with reading():
            async for chunk in self._resp.content.iter_any():
                yield chunk

    async def read(self) -> bytes:
        with reading():
            return await self._resp.read()

    def close(self) -> None:
        self._resp.close()


class BufferedResponse:
    """An answer the provider already holds in full (e.g. an error it translated)."""

    __slots__ = ("_body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self._body = body
        self.headers: Mapping[str, str] = CIMultiDict(headers or {"Content-Type": "application/json"})

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        if self._body:
            yield self._body

    async def read(self) -> bytes:
        return self._body

    def close(self) -> None:
        pass


def describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def new_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
    # auto_decompress: the bridge parses usage from bodies, so it asks for gzip and decodes it.
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True,
                                 skip_auto_headers=("User-Agent",))


class UpstreamClient:
    """One provider's pooled aiohttp session, opened on first use; failures to connect become
    UpstreamError (504 timed out, 502 unreachable) naming the provider."""

    __slots__ = ("_name", "_session")

    def __init__(self, name: str) -> None:
        self._name = name
        self._session: aiohttp.ClientSession | None = None

    async def request(self, method: str, url: str | URL, *, data: bytes | None,
                      headers: Mapping[str, str]) -> aiohttp.ClientResponse:
        if self._session is None:
            self._session = new_session()
        try:
            return await self._session.request(method, url, data=data, headers=headers)
        except TimeoutError as exc:
            raise UpstreamError(504, f"upstream {self._name} timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(502, f"upstream {self._name} unreachable: {describe(exc)}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HTTPProvider:
    """Shared plumbing; subclasses say how to authenticate and which routes exist.

    ``key`` may hold several keys separated by commas: a key pool (``keypool.py``) that moves on
    to the next key when the upstream answers 429 or 401, before anything reached the client.
    """

    type = ""
    accepts_byok = True             # the upstream takes the user's own key as sent
    byok_only = False               # no central key: only BYOK requests (the ChatGPT subscription route)
    # Prefix of the route tail that the base URL already contains (OpenAI's base ends in /v1/).
    base_strip = ""
    routes: RouteTable
    apis: Mapping[str, Api]       # the intercepted routes of ``routes``

    def __init__(self, name: str, key: str, base_url: str) -> None:
        self.name = name
        self.keys = KeyPool(name, split_keys(key) or [""])
        self._base_url = base_url
        self._client = UpstreamClient(name)

    def auth_headers(self, key: str) -> dict[str, str]:
        """The headers that carry ``key`` (one key of the pool) upstream."""
        raise NotImplementedError

    def byok_only_help(self) -> str:
        return (f"provider {self.name!r} is BYOK only: send your own provider credential, and your AI Bridge "
                f"token in the {GOVERNANCE_HEADER} header")

    def secrets(self) -> list[str]:
        """Every key of the pool: kept out of relayed errors and logs (``bridge/scrub.py``)."""
        return [key for key in self.keys.keys if key]

    def upstream_model(self, model: str) -> str:
        return model

    def url(self, tail: str, query: str) -> str:
        return join_url(self._base_url, tail.removeprefix(self.base_strip), query)

    async def send(self, request: UpstreamRequest) -> HTTPUpstreamResponse | BufferedResponse:
        if request.credential.byok:     # the user's own key, as sent: no configured key, no failover
            return HTTPUpstreamResponse(await self._request(request, request.credential.headers))
        pool = self.keys
        for index in pool.order():
            resp = await self._request(request, self.auth_headers(pool.keys[index]).items())
            if not pool.pooled or resp.status not in COOLING_STATUSES:
                return HTTPUpstreamResponse(resp)
            pool.cool(index, resp.status, resp.headers)
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                await resp.read()       # a small error body: keep the connection for the next key
            resp.release()
        return self._no_key_left()

    async def _request(self, request: UpstreamRequest, auth: Iterable[tuple[str, str]]) -> aiohttp.ClientResponse:
        headers = CIMultiDict(request.headers)
        headers.update(auth)
        headers["Accept-Encoding"] = "gzip, deflate"
        return await self._client.request(request.method, self.url(request.tail, request.query),
                                          data=request.body or None, headers=headers)

    def _no_key_left(self) -> BufferedResponse:
        """Every key of the pool is cooling: 429 with Retry-After, or 502 when all were refused."""
        api = next(iter(self.apis.values()))
        if self.keys.all_refused():
            raise UpstreamError(502, f"every API key of provider {self.name} was refused by the upstream "
                                     "(401): check the configured keys")
        wait = self.keys.retry_after()
        message = f"every API key of provider {self.name} is rate limited by the upstream; retry in {wait}s"
        return BufferedResponse(429, orjson.dumps(api.error_body(429, message)),
                                {"Content-Type": "application/json", "Retry-After": str(wait)})

    async def close(self) -> None:
        await self._client.close()


@dataclass(frozen=True)
class HTTPProviderConfig(ProviderConfig):
    key: str
    byok_only: bool = False       # no key: every request must bring its own (BYOK)


class HTTPType(ProviderType[HTTPProviderConfig]):
    """A provider kind reached over HTTP with one key: fields ``KEY`` (required) and ``BASE_URL``.

    ``legacy_options`` (Settings keys of a key option and a base URL option) lets the
    single-provider options make a provider named after the type when the key is set; the base URL
    option's default is then the default ``BASE_URL`` too. A kind without them sets
    ``default_base_url`` or needs ``BASE_URL``.
    """

    provider: Callable[[str, str, str], HTTPProvider]   # (name, key, base URL) → the provider
    legacy_options: tuple[str, str] | None = None
    default_base_url = ""

    def from_fields(self, fields: ProviderFields) -> HTTPProviderConfig:
        default = OPTIONS_BY_KEY[self.legacy_options[1]].default if self.legacy_options else self.default_base_url
        base_url = fields.url("BASE_URL", default)
        if not base_url:
            raise fields.error("BASE_URL", f"provider {fields.name!r} needs a base URL")
        key = fields.get("KEY")
        if not split_keys(key):
            raise fields.error("KEY", f"provider {fields.name!r} needs an API key (several: separated by commas)")
        return HTTPProviderConfig(self.kind, self.type, fields.name, base_url, key)

    def from_legacy(self, settings: Settings) -> tuple[str, HTTPProviderConfig] | None:
        if self.legacy_options is None:
            return None
        key_option, base_url_option = self.legacy_options
        fields = legacy_fields(settings, self.type, {"KEY": key_option, "BASE_URL": base_url_option})
        if not fields.get("KEY"):
            return None
        return legacy_label(key_option), self.from_fields(fields)

    def build(self, config: HTTPProviderConfig) -> Provider:
        provider = self.provider(config.name, config.key, config.base_url)
        if config.byok_only:
            provider.byok_only = True
        return provider
