"""Replicas (server processes) and the interceptions a dead one left open.

Every server process has a row in ``aibridge_replicas`` (id, hostname, pid, heartbeat) and
stamps the interceptions it starts with its id. A replica is dead when its heartbeat is older
than ``dead_after``, or when it ran on this host and its pid is gone (or is ours: a previous
life of this container). Open interceptions (``ended_at`` NULL) of dead replicas, or with no
replica older than ``dead_after`` (written before replicas were recorded), are closed as
``interrupted``; see docs/monitoring.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store.schema import CHILD_TABLES, interceptions, replicas
from aibridge.store.users import iso, now


@dataclasses.dataclass(frozen=True)
class Me:
    id: uuid.UUID
    hostname: str
    pid: int

    @classmethod
    def here(cls) -> Me:
        return cls(uuid.uuid4(), socket.gethostname()[:256], os.getpid())


async def heartbeat(engine: AsyncEngine, me: Me, started_at: dt.datetime) -> None:
    """Say this replica is alive (insert its row again if another replica removed it)."""
    stamp = now()
    async with engine.begin() as conn:
        done = await conn.execute(replicas.update().where(replicas.c.id == me.id).values(heartbeat_at=stamp))
        if done.rowcount == 0:
            await conn.execute(replicas.insert().values(id=me.id, hostname=me.hostname, pid=me.pid,
                                                        started_at=started_at, heartbeat_at=stamp))


async def leave(engine: AsyncEngine, me: Me) -> None:
    async with engine.begin() as conn:
        await conn.execute(replicas.delete().where(replicas.c.id == me.id))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_dead(row: Any, me: Me, stamp: dt.datetime, dead_after: dt.timedelta) -> bool:
    if row.id == me.id:
        return False
    if row.heartbeat_at < stamp - dead_after:
        return True
    return bool(row.hostname == me.hostname and (row.pid == me.pid or not _pid_alive(row.pid)))


async def close_interrupted(engine: AsyncEngine, me: Me, dead_after: dt.timedelta) -> int:
    """Close the open interceptions no live replica runs; returns how many."""
    stamp = now()
    async with engine.begin() as conn:
        rows = (await conn.execute(sa.select(replicas))).all()
        dead = {r.id: r for r in rows if is_dead(r, me, stamp, dead_after)}
        live = [r.id for r in rows if r.id not in dead]
        c = interceptions.c
        orphans = (await conn.execute(
            sa.select(c.id, c.replica_id, c.started_at, c.metadata).where(
                c.ended_at.is_(None),
                sa.or_(sa.and_(c.replica_id.is_(None), c.started_at < stamp - dead_after),
                       sa.and_(c.replica_id.is_not(None), c.replica_id.not_in(live) if live else sa.true())))
        )).all()
        last_seen = await _last_records(conn, [o.id for o in orphans])
        for orphan in orphans:
            owner = dead.get(orphan.replica_id)
            heartbeat_at = owner.heartbeat_at if owner is not None else None
            metadata = {**(orphan.metadata or {}), "outcome": "interrupted",
                        "error": "the server handling it stopped before the interception ended",
                        "interrupted": {"detected_at": iso(stamp), "detected_by": str(me.id),
                                        "replica_id": str(orphan.replica_id) if orphan.replica_id else None,
                                        "last_heartbeat": iso(heartbeat_at) if heartbeat_at else None}}
            await conn.execute(interceptions.update().where(c.id == orphan.id, c.ended_at.is_(None)).values(
                ended_at=max(last_seen.get(orphan.id, orphan.started_at), orphan.started_at), metadata=metadata))
        if dead:
            await conn.execute(replicas.delete().where(replicas.c.id.in_(list(dead))))
    return len(orphans)


async def _last_records(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dt.datetime]:
    """The newest record of each interception: the last moment it is known to have been alive."""
    found: dict[uuid.UUID, dt.datetime] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        for table in CHILD_TABLES:
            rows = await conn.execute(sa.select(table.c.interception_id, sa.func.max(table.c.created_at))
                                      .where(table.c.interception_id.in_(chunk))
                                      .group_by(table.c.interception_id))
            for interception_id, latest in rows:
                if latest is not None:
                    latest = _aware(latest)
                    found[interception_id] = max(found.get(interception_id, latest), latest)
    return found


def _aware(value: Any) -> dt.datetime:
    stamp: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp
