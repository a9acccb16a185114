"""The audit log, read-only (Coder's ``GET /api/v2/audit``): owners and auditors.

No route writes or deletes a row: rows are written by the changes they record
(``rest/common.audited``, ``store/audit.change``) and purged by retention only.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import orjson
from aiohttp import web

from aibridge.rest.common import APIError, json_response, query_terms, require
from aibridge.rest.interceptions import parse_limit, parse_offset, parse_time
from aibridge.server_keys import ENGINE
from aibridge.store import audit
from aibridge.store.audit import Filters

PATH = "/api/v2/audit"
QUERY_KEYS = ("action", "resource_type", "username", "resource_target", "date_from", "date_to")
CSV_COLUMNS = ("id", "time", "request_id", "ip", "user_agent", "user_id", "username", "action", "resource_type",
               "resource_id", "resource_target", "status_code", "diff", "additional_fields", "description")


def parse_date(key: str, value: str, end: bool) -> dt.datetime:
    """``YYYY-MM-DD`` (a whole UTC day: ``date_to`` includes it) or an RFC3339 timestamp."""
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return parse_time(key, value)
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return start + dt.timedelta(days=1) if end else start


def parse_query(q: str) -> Filters:
    """``q``: space-separated ``key:value`` terms (values may be quoted); unknown key → 400."""
    found: dict[str, Any] = {}
    for key, value in query_terms(q, QUERY_KEYS):
        if "\x00" in value:
            raise APIError(400, f"invalid {key}: a NUL character")
        if key == "action" and value not in audit.ACTIONS:
            raise APIError(400, f"invalid action {value!r}", f"use one of {', '.join(audit.ACTIONS)}")
        found[key] = parse_date(key, value, key == "date_to") if key.startswith("date_") else value
    return Filters(**found)


async def list_audit_logs(request: web.Request) -> web.Response:
    require(request, "owner", "auditor")
    filters = parse_query(request.query.get("q", ""))
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise APIError(400, f"invalid format {fmt!r}", "use json or csv")
    rows, count = await audit.search(request.app[ENGINE], filters, parse_limit(request), parse_offset(request))
    if fmt == "csv":
        return web.Response(text=to_csv(rows), content_type="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="aibridge-audit.csv"'})
    return json_response({"audit_logs": rows, "count": count})


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        user = row["user"] or {}
        flat = {**row, "user_id": user.get("id", ""), "username": user.get("username", ""),
                "diff": orjson.dumps(row["diff"]).decode(),
                "additional_fields": orjson.dumps(row["additional_fields"]).decode()}
        writer.writerow([flat[c] for c in CSV_COLUMNS])
    return out.getvalue()


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, list_audit_logs)
