"""Responses continuations: which upstream response a joined answer's shown id continues from.

MCP's inner turns make several upstream calls for one answer; the client sees the first call's
response id, the last call's response holds the whole conversation. Rows are written once per
joined streamed answer, read when a Responses request names a ``previous_response_id`` (MCP
configured only), and purged with the interceptions (``retention.py``).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store.schema import response_continuations as table


async def remember(engine: AsyncEngine, shown_id: str, upstream_id: str) -> None:
    values = {"shown_id": shown_id, "upstream_id": upstream_id, "created_at": dt.datetime.now(dt.UTC)}
    async with engine.begin() as conn:
        module = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(module.insert(table).values(**values).on_conflict_do_update(
            index_elements=["shown_id"], set_={"upstream_id": upstream_id, "created_at": values["created_at"]}))


async def upstream_id(engine: AsyncEngine, shown_id: str) -> str | None:
    async with engine.connect() as conn:
        found: str | None = await conn.scalar(sa.select(table.c.upstream_id).where(table.c.shown_id == shown_id))
    return found


async def purge(conn: AsyncConnection, cutoff: dt.datetime) -> int:
    """Forget continuations made before ``cutoff``; how many."""
    async with conn.begin():
        deleted = await conn.execute(table.delete().where(table.c.created_at < cutoff))
    return deleted.rowcount
