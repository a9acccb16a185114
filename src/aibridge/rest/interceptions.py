"""Export: interceptions (Coder's shape) and the distinct clients and models seen (sessions: sessions.py)."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import uuid

from aiohttp import web

from aibridge.identity.roles import Actor
from aibridge.rest.common import APIError, actor, json_response
from aibridge.server_keys import ENGINE
from aibridge.store import export
from aibridge.store.export import Filters

QUERY_KEYS = ("initiator", "provider", "provider_name", "model", "client", "started_after", "started_before",
              "session")
SESSION_KEYS = ("initiator", "provider", "provider_name", "model", "client", "session_id", "started_after",
                "started_before")
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


def parse_time(key: str, value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise APIError(400, f"invalid {key}: {value!r} is not an RFC3339 timestamp",
                       "e.g. 2026-01-31T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise APIError(400, f"invalid {key}: {value!r} has no time zone", "e.g. 2026-01-31T00:00:00Z")
    return parsed


def parse_query(q: str, current: Actor, keys: tuple[str, ...] = QUERY_KEYS) -> Filters:
    """``q`` holds space-separated ``key:value`` terms (values may be quoted)."""
    filters = Filters(restrict_to=None if current.reads_all_records else current.id)
    try:
        terms = shlex.split(q)
    except ValueError as exc:
        raise APIError(400, f"invalid query: {exc}") from None
    for term in terms:
        key, sep, value = term.partition(":")
        if not sep or not value:
            raise APIError(400, f"invalid query term {term!r}",
                           f"use key:value with a key among {', '.join(keys)}")
        if key not in keys:
            raise APIError(400, f"unknown query key {key!r}", f"valid keys: {', '.join(keys)}")
        if key == "initiator":
            _set_initiator(filters, value, current)
        elif key in ("started_after", "started_before"):
            setattr(filters, key, parse_time(key, value))
        else:
            setattr(filters, "session_id" if key in ("session", "session_id") else key, value)
    return filters


def _set_initiator(filters: Filters, value: str, current: Actor) -> None:
    if value == "me":
        filters.initiator_id = current.id
        return
    try:
        filters.initiator_id = uuid.UUID(value)
    except ValueError:
        filters.initiator_username = value


# ASCII digits only: str.isdigit() also accepts '²', which int() refuses.
_NUMBER = re.compile(r"[0-9]{1,10}")
MAX_OFFSET = 1_000_000_000


def parse_limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not _NUMBER.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise APIError(400, f"invalid limit {raw!r}", f"limit must be between 1 and {MAX_LIMIT}")
    return int(raw)


def parse_offset(request: web.Request) -> int:
    raw = request.query.get("offset", "0")
    if not _NUMBER.fullmatch(raw) or int(raw) > MAX_OFFSET:
        raise APIError(400, f"invalid offset {raw!r}", f"offset must be between 0 and {MAX_OFFSET}")
    return int(raw)


def parse_uuid(name: str, raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise APIError(400, f"invalid {name} {raw!r}: not a UUID") from None


async def list_interceptions(request: web.Request) -> web.Response:
    filters = parse_query(request.query.get("q", ""), actor(request))
    limit = parse_limit(request)
    raw_after = request.query.get("after_id", "")
    after_id = parse_uuid("after_id", raw_after) if raw_after else None
    try:
        count, results = await export.list_interceptions(request.app[ENGINE], filters, limit, after_id)
    except export.UnknownCursor as exc:
        raise APIError(400, str(exc)) from None
    return json_response({"count": count, "results": results})


async def list_clients(request: web.Request) -> web.Response:
    current = actor(request)
    restrict = None if current.reads_all_records else current.id
    return json_response(await export.distinct_values(request.app[ENGINE], "client", restrict))


async def list_models(request: web.Request) -> web.Response:
    current = actor(request)
    restrict = None if current.reads_all_records else current.id
    return json_response(await export.distinct_values(request.app[ENGINE], "model", restrict))


def add_routes(app: web.Application) -> None:
    from aibridge.rest import sessions as sessions_api  # it imports this module's parsers
    app.router.add_get("/api/v2/aibridge/interceptions", list_interceptions)
    app.router.add_get("/api/v2/aibridge/clients", list_clients)
    app.router.add_get("/api/v2/aibridge/models", list_models)
    sessions_api.add_routes(app)
