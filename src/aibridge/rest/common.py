"""Shared pieces of the REST API: JSON in and out, errors, the acting user."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from aibridge.httpserver import BodyError, read_body
from aibridge.identity.roles import Actor
from aibridge.server_keys import SETTINGS


class APIError(web.HTTPException):
    """An error answered as ``{"message", "detail"}`` JSON with its status."""

    def __init__(self, status: int, message: str, detail: str = "") -> None:
        self.status_code = status
        super().__init__(body=orjson.dumps({"message": message, "detail": detail}),
                         content_type="application/json")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def actor(request: web.Request) -> Actor:
    found: Actor = request["actor"]
    return found


def require(request: web.Request, *roles: str) -> Actor:
    current = actor(request)
    if current.role not in roles:
        raise APIError(403, "forbidden", f"this action needs the role {' or '.join(roles)}; "
                                         f"you are {current.role}")
    return current


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        raw = await read_body(request, request.app[SETTINGS].request_read_timeout)
    except BodyError as exc:
        raise APIError(exc.status, exc.message) from None
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, "request body is not valid JSON", f"{exc.msg} at position {exc.pos}") from None
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object")
    return body


def string_field(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise APIError(400, f"field {name!r} must be a string")
    return value.strip()
