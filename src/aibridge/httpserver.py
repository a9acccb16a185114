"""The HTTP server under the application: malformed requests are answered without echoing them.

aiohttp answers a request it cannot parse (a header with a control character, a line too long)
with the offending raw line in the body and logs it with a traceback at ERROR; that line may be
``Authorization: Bearer <the user's token>``. Here such a request gets a short JSON 400 naming
only the kind of problem, and one WARNING line without the request's bytes.
"""

from __future__ import annotations

import logging
import re

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger("aibridge.http")
# The description ends where aiohttp starts quoting the request's bytes.
_QUOTED = re.compile(r"[:'\"\n].*", re.DOTALL)


def describe(exc: HttpProcessingError) -> str:
    text = _QUOTED.sub("", str(exc.message)).strip()
    return text[:80] or type(exc).__name__


class QuietRequestHandler(RequestHandler):
    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
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
