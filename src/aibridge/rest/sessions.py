"""Sessions and their threads in Coder's shape (DESIGN §2.6; the rules in store/sessions.py)."""

from __future__ import annotations

from aiohttp import web

from aibridge.rest.common import APIError, actor, json_response
from aibridge.rest.interceptions import SESSION_KEYS, parse_limit, parse_offset, parse_query, parse_uuid
from aibridge.server_keys import ENGINE
from aibridge.store import sessions


async def list_sessions(request: web.Request) -> web.Response:
    filters = parse_query(request.query.get("q", ""), actor(request), SESSION_KEYS)
    limit, offset = parse_limit(request), parse_offset(request)
    after = request.query.get("after_session_id") or None
    if after is not None and offset:
        raise APIError(400, "after_session_id and offset cannot be combined", "use one way of paging")
    try:
        count, found = await sessions.list_sessions(request.app[ENGINE], filters, limit, offset, after)
    except sessions.UnknownThread as exc:
        raise APIError(400, str(exc)) from None
    return json_response({"count": count, "sessions": found})


async def get_session(request: web.Request) -> web.Response:
    current = actor(request)
    page = sessions.Page(limit=parse_limit(request))
    for name in ("after_id", "before_id"):
        if raw := request.query.get(name, ""):
            setattr(page, name, parse_uuid(name, raw))
    session_id = request.match_info["session_id"]
    try:
        found = await sessions.get_session(request.app[ENGINE], session_id,
                                           None if current.reads_all_records else current.id, page)
    except sessions.UnknownThread as exc:
        raise APIError(400, str(exc)) from None
    if found is None:
        raise APIError(404, f"session {session_id!r} not found")
    return json_response(found)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v2/aibridge/sessions", list_sessions)
    app.router.add_get("/api/v2/aibridge/sessions/{session_id}", get_session)
