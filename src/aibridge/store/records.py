"""Writing recorded items: one transaction per batch, idempotent so replays are safe."""

from __future__ import annotations

import asyncio
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
from aibridge.store.db import create_sync_sqlite_engine
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


# Shallow rows: dataclasses.asdict would deep-copy every UUID, datetime and dict.
_FIELDS = {kind: tuple(f.name for f in dataclasses.fields(kind)) for kind, _ in _INSERT_TABLES}

_END = interceptions.update().where(interceptions.c.id == sa.bindparam("end_id"))
_END_PLAIN = _END.values(ended_at=sa.bindparam("end_at"))
_END_WITH_METADATA = _END.values(ended_at=sa.bindparam("end_at"), metadata=sa.bindparam("end_metadata"))

Plan = list[tuple[Any, list[dict[str, Any]]]]


def plan(dialect: str, batch: Sequence[Record]) -> Plan:
    """The statements for one batch, each with all its rows (one executemany per table)."""
    rows: dict[type, list[dict[str, Any]]] = {kind: [] for kind, _ in _INSERT_TABLES}
    starts: dict[Any, dict[str, Any]] = {}
    plain_ends: list[dict[str, Any]] = []
    ends_with_metadata: list[dict[str, Any]] = []
    for record in batch:
        if isinstance(record, InterceptionEnd):
            start = starts.get(record.id)
            if start is not None:       # started and ended within one batch: one INSERT, no UPDATE
                start["ended_at"] = record.ended_at
                if record.metadata:
                    start["metadata"] = record.metadata
            elif record.metadata:
                ends_with_metadata.append({"end_id": record.id, "end_at": record.ended_at,
                                           "end_metadata": record.metadata})
            else:
                plain_ends.append({"end_id": record.id, "end_at": record.ended_at})
        else:
            row = {name: getattr(record, name) for name in _FIELDS[type(record)]}
            rows[type(record)].append(row)
            if isinstance(record, InterceptionStart):
                row["ended_at"] = None
                starts[record.id] = row
    statements: Plan = [(_insert(dialect, table), rows[kind]) for kind, table in _INSERT_TABLES if rows[kind]]
    if plain_ends:
        statements.append((_END_PLAIN, plain_ends))
    if ends_with_metadata:
        statements.append((_END_WITH_METADATA, ends_with_metadata))
    return statements


async def write_batch(engine: AsyncEngine, batch: Sequence[Record]) -> None:
    async with engine.begin() as conn:
        for statement, params in plan(conn.dialect.name, batch):
            await conn.execute(statement, params)


def write_batch_sync(engine: sa.Engine, batch: Sequence[Record]) -> None:
    with engine.begin() as conn:
        for statement, params in plan(conn.dialect.name, batch):
            conn.execute(statement, params)


class BatchWriter:
    """Writes batches in one transaction each.

    SQLite goes through a synchronous engine in a worker thread: a whole batch is one hop to
    that thread instead of one hop per statement (aiosqlite), which halves the writer's CPU.
    PostgreSQL uses the async engine (asyncpg needs no threads).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sync = create_sync_sqlite_engine(engine.url) if engine.dialect.name == "sqlite" else None

    async def write(self, batch: Sequence[Record]) -> None:
        if self._sync is not None:
            await asyncio.to_thread(write_batch_sync, self._sync, batch)
        else:
            await write_batch(self._engine, batch)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
