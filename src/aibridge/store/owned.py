"""Queries of the owned-objects table: who made a response or conversation relayed by the bridge."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store.schema import owned_objects


async def remember(engine: AsyncEngine, provider: str, kind: str, object_id: str, user_id: uuid.UUID,
                   created_at: dt.datetime | None = None) -> None:
    """Record the maker of an object; the first maker stays (an id is never given twice)."""
    module = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = module.insert(owned_objects).values(
        provider_name=provider, id=object_id, kind=kind, user_id=user_id,
        created_at=created_at or dt.datetime.now(dt.UTC)).on_conflict_do_nothing()
    async with engine.begin() as conn:
        await conn.execute(statement)


async def owners(engine: AsyncEngine, provider: str, ids: Sequence[str]) -> dict[str, uuid.UUID]:
    """The maker of each of ``ids`` that has one."""
    query = sa.select(owned_objects.c.id, owned_objects.c.user_id).where(
        owned_objects.c.provider_name == provider, owned_objects.c.id.in_(ids))
    async with engine.connect() as conn:
        return {row.id: row.user_id for row in await conn.execute(query)}


async def purge(conn: AsyncConnection, cutoff: dt.datetime) -> int:
    """Forget the makers of objects made before ``cutoff`` (with the interceptions of that time)."""
    async with conn.begin():
        deleted = await conn.execute(owned_objects.delete().where(owned_objects.c.created_at < cutoff))
    return int(deleted.rowcount)
