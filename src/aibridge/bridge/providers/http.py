"""Providers reached over plain HTTP (OpenAI, Anthropic and compatible gateways).

One pooled aiohttp client per provider. The client's headers go upstream minus hop-by-hop
headers and credentials; the central key is added by the concrete provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from aibridge.bridge.providers.base import UpstreamError, UpstreamRequest

# Never forwarded upstream: hop-by-hop headers, ones aiohttp sets itself, and every credential
# the client might have sent (the user's AI Bridge token must never leave the bridge).
DROPPED_REQUEST_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
    "authorization", "x-api-key", "coder-session-token", "cookie", "api-key", "x-goog-api-key",
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


def forwardable_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items()
                       if (name := k.lower()) not in DROPPED_REQUEST_HEADERS and not name.startswith(ACTOR_PREFIX))


def relayable_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in DROPPED_RESPONSE_HEADERS)


def join_url(base: str, tail: str, query: str = "") -> str:
    url = base.rstrip("/") + "/" + tail.lstrip("/")
    return f"{url}?{query}" if query else url


class HTTPUpstreamResponse:
    """An aiohttp response seen through the UpstreamResponse protocol."""

    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: CIMultiDictProxy[str] = resp.headers

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError(502, f"upstream connection lost: {describe(exc)}") from exc

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamError(502, f"upstream connection lost: {describe(exc)}") from exc

    def close(self) -> None:
        self._resp.close()


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


class HTTPProvider:
    """Shared plumbing; subclasses say how to authenticate and which routes exist."""

    type = ""
    # Prefix of the route tail that the base URL already contains (OpenAI's base ends in /v1/).
    base_strip = ""

    def __init__(self, name: str, key: str, base_url: str) -> None:
        self.name = name
        self._key = key
        self._base_url = base_url
        self._session: aiohttp.ClientSession | None = None

    def auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def upstream_model(self, model: str) -> str:
        return model

    def url(self, tail: str, query: str) -> str:
        return join_url(self._base_url, tail.removeprefix(self.base_strip), query)

    async def send(self, request: UpstreamRequest) -> HTTPUpstreamResponse:
        if self._session is None:
            self._session = new_session()
        headers = CIMultiDict(request.headers)
        headers.update(self.auth_headers())
        headers["Accept-Encoding"] = "gzip, deflate"
        try:
            resp = await self._session.request(request.method, self.url(request.tail, request.query),
                                               data=request.body or None, headers=headers)
        except TimeoutError as exc:
            raise UpstreamError(504, f"upstream {self.name} timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(502, f"upstream {self.name} unreachable: {describe(exc)}") from exc
        return HTTPUpstreamResponse(resp)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
