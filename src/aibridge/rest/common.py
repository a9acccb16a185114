"""Shared pieces of the REST API: JSON in and out, errors, the acting user, audited changes."""

from __future__ import annotations

import contextlib
import shlex
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from aiohttp import web

from aibridge.httpserver import BodyError, read_body
from aibridge.identity.roles import Actor
from aibridge.server_keys import ENGINE, SETTINGS
from aibridge.store import audit
from aibridge.store.audit import Change


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


def query_terms(q: str, keys: Sequence[str]) -> list[tuple[str, str]]:
    """A ``q`` parameter's space-separated ``key:value`` terms (values may be quoted), each key one
    of ``keys``: anything else is a 400 naming the valid keys."""
    try:
        terms = shlex.split(q)
    except ValueError as exc:
        raise APIError(400, f"invalid query: {exc}") from None
    found = []
    for term in terms:
        key, sep, value = term.partition(":")
        if not sep or not value:
            raise APIError(400, f"invalid query term {term!r}", f"use key:value with a key among {', '.join(keys)}")
        if key not in keys:
            raise APIError(400, f"unknown query key {key!r}", f"valid keys: {', '.join(keys)}")
        found.append((key, value))
    return found


def string_field(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise APIError(400, f"field {name!r} must be a string")
    return value.strip()


# ---------------------------------------------------------------- request ids and audited changes

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_KEY = "request_id"


def request_id(request: web.Request) -> str:
    """The request's id: the caller's ``X-Request-Id`` (kept when sane) or one made here."""
    found = request.get(REQUEST_ID_KEY)
    if not found:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        found = given if 0 < len(given) <= 64 and given.isprintable() else str(uuid.uuid4())
        request[REQUEST_ID_KEY] = found
    return str(found)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every REST answer carries its request id (also the audit row's ``request_id``); the bridge
    routes (the hot path) are left alone."""
    if "provider" in request.match_info:
        return await handler(request)  # type: ignore[no-any-return]
    rid = request_id(request)
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = rid
        raise
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = rid
    return response


def audit_actor(request: web.Request) -> audit.Actor:
    """Who makes this request, from where (for the audit log)."""
    current = request.get("actor")
    return audit.Actor(user_id=current.id if current else None, username=current.username if current else "",
                       ip=request.remote or "", user_agent=request.headers.get("User-Agent", ""),
                       request_id=request_id(request))


@contextlib.asynccontextmanager
async def audited(request: web.Request, action: str, resource_type: str, *, resource_id: str = "",
                  resource_target: str = "") -> AsyncIterator[Change]:
    """Run a change and its audit row in one transaction. Do the role check, the validation and every
    write inside the block, writing through ``change.conn`` (store functions take it in place of
    the engine); fill in ``change.resource_id``/``resource_target``/``diff`` as they are known,
    and ``change.status_code`` when the answer is not 201 (create), 204 (delete) or 200. An
    ``APIError`` raised in the block rolls the change back and writes only its row, with its status.
    Publish cache changes (``CHANGES.publish()``) after the block: the commit happens at its end."""
    async with audit.change(request.app[ENGINE], audit_actor(request), action, resource_type,
                            resource_id=resource_id, resource_target=resource_target) as change:
        yield change
