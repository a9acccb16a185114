"""Reading the owned-objects table (the recorder writes it: ``OwnedObjectRecord``), and its purge."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store.schema import owned_objects


async def owners(engine: AsyncEngine, ids: Sequence[str]) -> dict[str, uuid.UUID]:
    """The maker of each of ``ids`` that has one."""
    query = sa.select(owned_objects.c.id, owned_objects.c.user_id).where(owned_objects.c.id.in_(ids))
    async with engine.connect() as conn:
        return {row.id: row.user_id for row in await conn.execute(query)}


async def purge(conn: AsyncConnection, cutoff: dt.datetime) -> int:
    """Forget the makers of objects made before ``cutoff`` (with the interceptions of that time)."""
    async with conn.begin():
        deleted = await conn.execute(owned_objects.delete().where(owned_objects.c.created_at < cutoff))
    return int(deleted.rowcount)
