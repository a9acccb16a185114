"""Retention's SQL: delete interceptions older than a cutoff, with all their records.

It deletes in batches (``batch_size`` interceptions per transaction) so that it never holds long
locks against the recorder, and it deletes the children (token usages, prompts, tool usages,
thoughts) explicitly before their interceptions, so it does not depend on foreign-key cascades
being enforced. The owners of stored responses and conversations made before the cutoff go with
them (``owned.purge``), and so do Responses continuations (``turns.py``). On PostgreSQL a replica
purges only while it holds a session advisory lock, and skips the run when another replica has it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store import owned, turns
from aibridge.store.schema import CHILD_TABLES, interceptions, owned_objects

BATCH_SIZE = 10_000
# Advisory lock key shared by every replica ("aibr" + 1); migrations use another key.
ADVISORY_LOCK_KEY = 7231460002


@dataclass(slots=True)
class PurgeResult:
    interceptions: int = 0
    children: dict[str, int] = field(default_factory=dict)   # table name → rows deleted
    skipped: bool = False        # another replica holds the purge lock
    continuations: int = 0       # Responses continuations forgotten (``turns.py``)

    def add_children(self, table: str, count: int) -> None:
        self.children[table] = self.children.get(table, 0) + count


async def purge(engine: AsyncEngine, retention_seconds: float, now: dt.datetime | None = None,
                batch_size: int = BATCH_SIZE) -> int:
    """Delete interceptions started before ``now - retention`` with their records; the count deleted."""
    result = await purge_detailed(engine, retention_seconds, now, batch_size)
    return result.interceptions


async def purge_detailed(engine: AsyncEngine, retention_seconds: float, now: dt.datetime | None = None,
                         batch_size: int = BATCH_SIZE) -> PurgeResult:
    result = PurgeResult()
    if retention_seconds <= 0:
        return result
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=retention_seconds)
    async with engine.connect() as conn:
        if not await _try_lock(conn):
            result.skipped = True
            return result
        try:
            while await _purge_batch(conn, cutoff, batch_size, result) == batch_size:
                await asyncio.sleep(0)     # let the recorder's transactions in between batches
            if forgotten := await owned.purge(conn, cutoff):
                result.add_children(owned_objects.name, forgotten)
            result.continuations = await turns.purge(conn, cutoff)
        finally:
            await _unlock(conn)
    return result


async def _purge_batch(conn: AsyncConnection, cutoff: dt.datetime, batch_size: int,
                       result: PurgeResult) -> int:
    """One transaction: up to ``batch_size`` old interceptions and their children; how many went."""
    async with conn.begin():
        rows = await conn.execute(sa.select(interceptions.c.id).where(interceptions.c.started_at < cutoff)
                                  .order_by(interceptions.c.started_at).limit(batch_size))
        ids: list[uuid.UUID] = list(rows.scalars())
        if not ids:
            return 0
        for table in CHILD_TABLES:
            deleted = await conn.execute(table.delete().where(table.c.interception_id.in_(ids)))
            result.add_children(table.name, deleted.rowcount)
        deleted = await conn.execute(interceptions.delete().where(interceptions.c.id.in_(ids)))
        result.interceptions += deleted.rowcount
    return len(ids)


async def _try_lock(conn: AsyncConnection) -> bool:
    """PostgreSQL: one replica purges at a time (session lock, held across the batches)."""
    if conn.dialect.name != "postgresql":
        return True     # SQLite has one writer anyway
    async with conn.begin():
        got = await conn.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    return bool(got)


async def _unlock(conn: AsyncConnection) -> None:
    if conn.dialect.name != "postgresql":
        return
    try:
        async with conn.begin():
            await conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
    except Exception:
        # The lock lives as long as the session: drop the connection rather than pool a locked one.
        await conn.invalidate()
        raise
