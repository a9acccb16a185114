"""The audit log: who changed what, when, from where, and with what result (Coder's shape).

``record`` is called in the transaction of the change it records, so a change never lands
without its row; a refused change writes only its row (in a transaction of its own). Secrets
never reach a row: a diff entry for a secret field is ``{"old": null, "new": null, "secret": true}``
(``diff`` builds such entries). No route writes or deletes rows; retention purges them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from aibridge.store.schema import audit_logs
from aibridge.store.users import iso, now

ACTIONS = ("create", "write", "delete", "login", "logout", "register")


@dataclass(frozen=True)
class Actor:
    """Who made a change and from where (the request's, or the CLI's own user and host)."""

    user_id: uuid.UUID | None = None
    username: str = ""
    ip: str = ""
    user_agent: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class Entry:
    action: str
    resource_type: str
    resource_id: str = ""
    resource_target: str = ""
    status_code: int = 200
    diff: Mapping[str, Any] = field(default_factory=dict)
    additional_fields: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None,
         secrets: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Per-field ``{old, new, secret}`` for the fields that differ; secret fields carry no values."""
    old, new, hidden = old or {}, new or {}, set(secrets)
    changed: dict[str, dict[str, Any]] = {}
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key in hidden:
            changed[key] = {"old": None, "new": None, "secret": True}
        else:
            changed[key] = {"old": before, "new": after, "secret": False}
    return changed


async def record(conn: AsyncConnection, actor: Actor, entry: Entry, at: dt.datetime | None = None) -> uuid.UUID:
    if entry.action not in ACTIONS:
        raise ValueError(f"unknown audit action {entry.action!r}")
    row_id = uuid.uuid4()
    await conn.execute(audit_logs.insert().values(
        id=row_id, time=at or now(), request_id=actor.request_id[:64], ip=actor.ip[:64],
        user_agent=actor.user_agent[:512], user_id=actor.user_id, username=actor.username[:64],
        action=entry.action, resource_type=entry.resource_type, resource_id=entry.resource_id[:64],
        resource_target=entry.resource_target[:256], diff=dict(entry.diff), status_code=entry.status_code,
        additional_fields=dict(entry.additional_fields), description=entry.description[:512]))
    return row_id


def to_json(row: Any) -> dict[str, Any]:
    """One row in Coder's shape (``GET /api/v2/audit``)."""
    return {"id": str(row.id), "request_id": row.request_id, "time": iso(row.time), "ip": row.ip,
            "user_agent": row.user_agent,
            "user": {"id": str(row.user_id), "username": row.username} if row.user_id else None,
            "action": row.action, "resource_type": row.resource_type, "resource_id": row.resource_id,
            "resource_target": row.resource_target, "diff": row.diff or {}, "status_code": row.status_code,
            "additional_fields": row.additional_fields or {}, "description": row.description}


async def latest(conn: AsyncConnection, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """The newest rows first (the REST API adds the filters)."""
    rows = await conn.execute(sa.select(audit_logs).order_by(audit_logs.c.time.desc(), audit_logs.c.id.desc())
                              .limit(limit).offset(offset))
    return [to_json(row) for row in rows]
