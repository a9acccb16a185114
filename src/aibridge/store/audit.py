"""The audit log: who changed what, when, from where, and with what result (Coder's shape).

``record`` is called in the transaction of the change it records, so a change never lands
without its row; a refused change writes only its row (in a transaction of its own). Secrets
never reach a row: a diff entry for a secret field is ``{"old": null, "new": null, "secret": true}``
(``diff`` builds such entries). No route writes or deletes rows; retention purges them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store.schema import audit_logs
from aibridge.store.tx import Db, connect
from aibridge.store.users import ApiKey, User, iso, now

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


def user_fields(user: User) -> dict[str, str]:
    """What a diff shows of a user."""
    return {"username": user.username, "email": user.email, "name": user.name, "role": user.role,
            "status": "suspended" if user.suspended else "active"}


def token_diff(key: ApiKey, token: str) -> dict[str, dict[str, Any]]:
    """A new token's diff: its secret only as ``secret: true``, without a value."""
    shown = key.to_json()
    return diff(None, {"token_name": key.name, "user_id": shown["user_id"], "expires_at": shown["expires_at"],
                       "key": token}, secrets=["key"])


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
            "user": {"id": str(row.user_id) if row.user_id else None, "username": row.username}
            if row.user_id or row.username else None,
            "action": row.action, "resource_type": row.resource_type, "resource_id": row.resource_id,
            "resource_target": row.resource_target, "diff": row.diff or {}, "status_code": row.status_code,
            "additional_fields": row.additional_fields or {}, "description": row.description}


async def latest(conn: AsyncConnection, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """The newest rows first."""
    rows, _ = await search(conn, Filters(), limit, offset)
    return rows


# ---------------------------------------------------------------- a change and its row, atomically

DEFAULT_STATUS = {"create": 201, "delete": 204}


class Change:
    """A change under way: the connection of its transaction, and its audit entry as it is learnt
    (the handler fills in the target, the diff and the status as it goes)."""

    conn: AsyncConnection

    def __init__(self, action: str, resource_type: str, resource_id: str = "", resource_target: str = "") -> None:
        self.action, self.resource_type = action, resource_type
        self.resource_id, self.resource_target = resource_id, resource_target
        self.status_code = DEFAULT_STATUS.get(action, 200)
        self.diff: dict[str, Any] = {}
        self.additional_fields: dict[str, Any] = {}
        self.description = ""

    def entry(self, status_code: int | None = None) -> Entry:
        return Entry(self.action, self.resource_type, self.resource_id, self.resource_target,
                     status_code or self.status_code, self.diff, self.additional_fields, self.description)


def http_status(exc: BaseException) -> int:
    """The status an exception answers with (aiohttp's ``status``), else 500."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) and status >= 400 else 500


@contextlib.asynccontextmanager
async def change(engine: AsyncEngine, actor: Actor, action: str, resource_type: str, *, resource_id: str = "",
                 resource_target: str = "", status_of: Callable[[BaseException], int] = http_status,
                 ) -> AsyncIterator[Change]:
    """A transaction for one change; its audit row is written in it before the commit. Raised out of
    the block, an exception rolls the change back and leaves only its row (in a transaction of its
    own, with ``status_of(exc)``); if the row itself cannot be written, nothing lands."""
    pending = Change(action, resource_type, resource_id, resource_target)
    writing_row = False
    try:
        async with engine.begin() as conn:
            pending.conn = conn
            yield pending
            writing_row = True
            await record(conn, actor, pending.entry())
    except Exception as exc:
        if not writing_row:
            async with engine.begin() as conn:
                await record(conn, actor, pending.entry(status_of(exc)))
        raise


# ---------------------------------------------------------------- reading and purging

@dataclass(frozen=True)
class Filters:
    action: str = ""
    resource_type: str = ""
    username: str = ""
    resource_target: str = ""
    date_from: dt.datetime | None = None
    date_to: dt.datetime | None = None


def _where(filters: Filters) -> list[sa.ColumnElement[bool]]:
    c = audit_logs.c
    found: list[sa.ColumnElement[bool]] = []
    for column, value in ((c.action, filters.action), (c.resource_type, filters.resource_type),
                          (c.resource_target, filters.resource_target)):
        if value:
            found.append(column == value)
    if filters.username:
        found.append(sa.func.lower(c.username) == filters.username.lower())
    if filters.date_from is not None:
        found.append(c.time >= filters.date_from)
    if filters.date_to is not None:
        found.append(c.time < filters.date_to)
    return found


async def search(db: Db, filters: Filters, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Matching rows, newest first, and how many match in all."""
    where = _where(filters)
    async with connect(db) as conn:
        rows = await conn.execute(sa.select(audit_logs).where(*where)
                                  .order_by(audit_logs.c.time.desc(), audit_logs.c.id.desc())
                                  .limit(limit).offset(offset))
        found = [to_json(row) for row in rows]
        count = (await conn.execute(sa.select(sa.func.count()).select_from(audit_logs).where(*where))).scalar_one()
    return found, int(count)


PURGE_BATCH = 10_000


async def purge(engine: AsyncEngine, retention_seconds: float, at: dt.datetime | None = None,
                batch_size: int = PURGE_BATCH) -> int:
    """Delete rows older than the retention, ``batch_size`` per transaction; how many went.
    Replicas may purge at once: a row deleted twice is deleted once."""
    if retention_seconds <= 0:
        return 0
    cutoff = (at or now()) - dt.timedelta(seconds=retention_seconds)
    deleted = 0
    while True:
        async with engine.begin() as conn:
            ids = list((await conn.execute(sa.select(audit_logs.c.id).where(audit_logs.c.time < cutoff)
                                           .order_by(audit_logs.c.time).limit(batch_size))).scalars())
            if ids:
                deleted += (await conn.execute(audit_logs.delete().where(audit_logs.c.id.in_(ids)))).rowcount
        if len(ids) < batch_size:
            return deleted
