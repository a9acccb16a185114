"""Writing recorded items: one transaction per batch, idempotent so replays are safe."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.recording.records import (
    InterceptionEnd,
    InterceptionStart,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsageRecord,
    ToolUsageRecord,
)
from aibridge.store.schema import interceptions, model_thoughts, token_usages, tool_usages, user_prompts

# Inserted in this order so children never precede their interception.
_INSERT_TABLES: tuple[tuple[type, sa.Table], ...] = (
    (InterceptionStart, interceptions),
    (TokenUsageRecord, token_usages),
    (PromptRecord, user_prompts),
    (ToolUsageRecord, tool_usages),
    (ThoughtRecord, model_thoughts),
)


def _insert(dialect: str, table: sa.Table) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=["id"])


async def write_batch(engine: AsyncEngine, batch: Sequence[Record]) -> None:
    rows: dict[type, list[dict[str, Any]]] = {kind: [] for kind, _ in _INSERT_TABLES}
    ends: list[InterceptionEnd] = []
    for record in batch:
        if isinstance(record, InterceptionEnd):
            ends.append(record)
        else:
            rows[type(record)].append(dataclasses.asdict(record))
    async with engine.begin() as conn:
        for kind, table in _INSERT_TABLES:
            if rows[kind]:
                await conn.execute(_insert(conn.dialect.name, table), rows[kind])
        for end in ends:
            values: dict[str, Any] = {"ended_at": end.ended_at}
            if end.metadata:
                values["metadata"] = end.metadata
            await conn.execute(interceptions.update().where(interceptions.c.id == end.id).values(**values))
