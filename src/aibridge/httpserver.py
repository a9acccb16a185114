"""The HTTP server under the application: malformed requests are answered without echoing them.

aiohttp answers a request it cannot parse (a header with a control character, a line too long)
with the offending raw line in the body and logs it with a traceback at ERROR; that line may be
``Authorization: Bearer <the user's token>``. Here such a request gets a short JSON 400 naming
only the kind of problem, and one WARNING line without the request's bytes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest

from aibridge.config import Settings

log = logging.getLogger("aibridge.http")
# The description ends where aiohttp starts quoting the request's bytes.
_QUOTED = re.compile(r"[:'\"\n].*", re.DOTALL)


def describe(exc: Exception) -> str:
    """What went wrong, without the request bytes aiohttp quotes in its messages."""
    text = re.sub(r"^\d{3}, message:\s*", "", str(getattr(exc, "message", exc)))
    text = _QUOTED.sub("", text).strip()
    return text[:80] or type(exc).__name__


class BodyError(Exception):
    """The request body cannot be had: it did not arrive in time (408) or cannot be decoded (400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request: web.Request, timeout: float) -> bytes:
    """The whole body (aiohttp keeps it for later reads), or BodyError: a body that never arrives
    must not hold a connection and a task forever."""
    try:
        if request.content.is_eof():        # the usual case: it came with the headers (no timer needed)
            return await request.read()
        async with asyncio.timeout(timeout or None):
            return await request.read()
    except TimeoutError:
        raise BodyError(408, f"the request body did not arrive within {timeout:g}s") from None
    except RequestPayloadError as exc:      # e.g. Content-Encoding: gzip on a body that is not
        raise BodyError(400, f"the request body cannot be read: {describe(exc)}") from None


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a connection may take to send its headers, and how many may be open (0: no limit).

    aiohttp closes a connection idle between requests after its ``keepalive_timeout`` (the idle
    timeout, given to the runner) but has no separate limit on a request head that trickles in,
    and no cap on connections.
    """

    header_timeout: float = 0.0
    max_connections: int = 0


NO_LIMIT = 365 * 86400.0     # "0: no limit" for aiohttp's keep-alive timer (its own 0 closes at once)


def connection_options(settings: Settings) -> dict[str, Any]:
    """The runner's keyword arguments for the main port's connection limits."""
    return {"keepalive_timeout": settings.aibridge_idle_timeout or NO_LIMIT,
            "limits": ConnectionLimits(settings.aibridge_header_timeout, settings.aibridge_max_connections)}


TOO_MANY = orjson.dumps({"message": "too many connections",
                         "detail": "the server holds as many connections as it is configured for "
                                   "(--aibridge-max-connections); retry shortly"})
_WARN_EVERY = 10.0
LAST_LOOK = 0.05         # after the header deadline: one more turn of the loop's I/O before closing


async def _refuse(_request: BaseRequest) -> web.StreamResponse:
    """The answer of a connection over the cap: a clear 503, then the connection is closed."""
    response = web.Response(status=503, body=TOO_MANY, content_type="application/json",
                            headers={"Retry-After": "1"})
    response.force_close()
    return response


class QuietRequestHandler(RequestHandler):
    """aiohttp's connection handler, plus the header timeout, the connection cap, and quieter errors.

    The header timer runs while the connection waits for a request head: from the connection, or
    from the first byte of a next request (an idle connection waits under the idle timeout
    instead). It never runs while a handler answers, so a long stream is never cut.
    """

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._manager
        assert isinstance(server, QuietServer)
        limit = server.limits.max_connections
        if limit and server.open_connections() >= limit:
            self._request_handler = _refuse         # read per request: its one request gets the 503
            server.warn_refused(limit)
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Inlined checks (this runs for every read of every connection): part of a head came, the
        # rest has header_timeout to follow; a whole head came, its timer goes.
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._arm_header_timer()
        elif self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _waiting_for_head(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    def _arm_header_timer(self) -> None:
        server = self._manager
        timeout = server.limits.header_timeout if isinstance(server, QuietServer) else 0.0
        if timeout > 0 and self._header_timer is None:
            self._header_timer = self._loop.call_later(timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        """The deadline passed; close once the loop has read what the socket holds. uvloop runs due
        timers before it polls: after a stall (a busy machine) the head may be waiting unread."""
        self._header_timer = self._loop.call_later(LAST_LOOK, self._header_still_missing) \
            if self._waiting_for_head() else None

    def _header_still_missing(self) -> None:
        self._header_timer = None
        if self._waiting_for_head():
            log.debug("closed a connection from %s: no complete request head in time",
                      self.transport.get_extra_info("peername") if self.transport else None)
            self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError | ConnectionError):
            # Left over after the answer: an unread body that cannot be decoded, or the client gone.
            log.info("dropped the rest of a request body: %s", describe(exc))
            return
        super().log_exception(*args, **kw)

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, ConnectionError):
            # The client went away (e.g. mid-upload): nothing to answer and nothing wrong here.
            log.info("client %s went away during %s %s", request.remote, request.method, request.path)
            response = web.Response(status=400)
            response.force_close()
            return response
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        reason = describe(exc)
        log.warning("refused a malformed HTTP request from %s: %s", request.remote, reason)
        response = web.Response(status=status if 400 <= status < 500 else 400, content_type="application/json",
                                body=orjson.dumps({"message": "malformed HTTP request", "detail": reason}))
        response.force_close()
        return response


class QuietServer(web.Server):
    limits: ConnectionLimits = ConnectionLimits()
    _last_warning: float = 0.0
    _refused: int = 0

    def __call__(self) -> RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)

    def open_connections(self) -> int:
        return len(self._connections)       # ``connections`` would copy the list on every accept

    def warn_refused(self, limit: int) -> None:
        """One WARNING per ``_WARN_EVERY`` seconds at most, with the count since the last one."""
        self._refused += 1
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY:
            log.warning("refused a connection: %d connections are open (--aibridge-max-connections); "
                        "%d refused since the last warning", limit, self._refused)
            self._last_warning, self._refused = now, 0


class AppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use ``QuietRequestHandler`` with ``limits``."""

    def __init__(self, app: web.Application, *, limits: ConnectionLimits | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits or ConnectionLimits()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp offers no parameter for the protocol class; its server is otherwise unchanged.
        server.__class__ = QuietServer
        assert isinstance(server, QuietServer)
        server.limits = self.limits
        return server
