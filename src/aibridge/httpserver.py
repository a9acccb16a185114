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
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest

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


class QuietRequestHandler(RequestHandler):
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
    def __call__(self) -> RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use ``QuietRequestHandler``."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp offers no parameter for the protocol class; its server is otherwise unchanged.
        server.__class__ = QuietServer
        return server
