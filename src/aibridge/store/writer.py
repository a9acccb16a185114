"""Writing recorded items: one transaction per batch, idempotent so replays are safe."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.store.db import SQLITE_PRAGMAS, json_dumps
from aibridge.store.records import (
    InterceptionEnd,
    InterceptionStart,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsageRecord,
    ToolUsageRecord,
)
from aibridge.store.sanitize import clean_record
from aibridge.store.schema import UTCDateTime, interceptions, model_thoughts, token_usages, tool_usages, user_prompts

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
    insert = module.insert(table)
    if table is interceptions:
        # Replayed from the journal, an interception may already be there without its end:
        # the end (and its metadata) wins, also over a sweep's "interrupted" (store/replicas.py).
        return insert.on_conflict_do_update(
            index_elements=["id"], set_={"ended_at": insert.excluded.ended_at, "metadata": insert.excluded.metadata,
                                         "cost_usd": insert.excluded.cost_usd},
            where=insert.excluded.ended_at.is_not(None))
    return insert.on_conflict_do_nothing(index_elements=["id"])


_UPSERT_END = " DO UPDATE SET ended_at = excluded.ended_at, metadata = excluded.metadata, " \
              "cost_usd = excluded.cost_usd " \
              "WHERE excluded.ended_at IS NOT NULL"


# Shallow rows: dataclasses.asdict would deep-copy every UUID, datetime and dict.
_FIELDS = {kind: tuple(f.name for f in dataclasses.fields(kind)) for kind, _ in _INSERT_TABLES}

_END = interceptions.update().where(interceptions.c.id == sa.bindparam("end_id"))
_END_PLAIN = _END.values(ended_at=sa.bindparam("end_at"), cost_usd=sa.bindparam("end_cost"))
_END_WITH_METADATA = _END.values(ended_at=sa.bindparam("end_at"), cost_usd=sa.bindparam("end_cost"),
                                 metadata=sa.bindparam("end_metadata"))

Plan = list[tuple[Any, list[dict[str, Any]]]]


@dataclasses.dataclass
class Rows:
    """One batch sorted into inserts per table and interception ends."""

    inserts: list[tuple[sa.Table, list[dict[str, Any]]]]
    plain_ends: list[dict[str, Any]]
    ends_with_metadata: list[dict[str, Any]]


def collect(batch: Sequence[Record]) -> Rows:
    """Rows for the batch, every value made storable first (store/sanitize.py)."""
    rows: dict[type, list[dict[str, Any]]] = {kind: [] for kind, _ in _INSERT_TABLES}
    starts: dict[Any, dict[str, Any]] = {}
    plain_ends: list[dict[str, Any]] = []
    ends_with_metadata: list[dict[str, Any]] = []
    for record in map(clean_record, batch):
        if isinstance(record, InterceptionEnd):
            start = starts.get(record.id)
            if start is not None:       # started and ended within one batch: one INSERT, no UPDATE
                start["ended_at"] = record.ended_at
                start["cost_usd"] = record.cost_usd
                if record.metadata:
                    start["metadata"] = record.metadata
            elif record.metadata:
                ends_with_metadata.append({"end_id": record.id, "end_at": record.ended_at,
                                           "end_cost": record.cost_usd, "end_metadata": record.metadata})
            else:
                plain_ends.append({"end_id": record.id, "end_at": record.ended_at, "end_cost": record.cost_usd})
        else:
            row = {name: getattr(record, name) for name in _FIELDS[type(record)]}
            rows[type(record)].append(row)
            if isinstance(record, InterceptionStart):
                row["ended_at"] = None
                row["cost_usd"] = None
                starts[record.id] = row
    inserts = [(table, rows[kind]) for kind, table in _INSERT_TABLES if rows[kind]]
    return Rows(inserts, plain_ends, ends_with_metadata)


def plan(dialect: str, batch: Sequence[Record]) -> Plan:
    """The SQLAlchemy statements for one batch, each with all its rows (one executemany each)."""
    rows = collect(batch)
    statements: Plan = [(_insert(dialect, table), table_rows) for table, table_rows in rows.inserts]
    if rows.plain_ends:
        statements.append((_END_PLAIN, rows.plain_ends))
    if rows.ends_with_metadata:
        statements.append((_END_WITH_METADATA, rows.ends_with_metadata))
    return statements


async def write_batch(engine: AsyncEngine, batch: Sequence[Record]) -> None:
    async with engine.begin() as conn:
        for statement, params in plan(conn.dialect.name, batch):
            await conn.execute(statement, params)


def _sqlite_time(value: dt.datetime) -> str:
    # The text SQLAlchemy's SQLite DATETIME stores (UTCDateTime keeps it in UTC).
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_converter(column: sa.Column[Any]) -> Callable[[Any], Any]:
    """How SQLAlchemy's types store a Python value on SQLite, for the columns this schema uses."""
    kind = column.type
    if isinstance(kind, sa.Uuid):
        return lambda v: v.hex
    if isinstance(kind, UTCDateTime):
        return _sqlite_time
    if isinstance(kind, sa.JSON):
        return json_dumps
    if isinstance(kind, sa.Boolean):
        return int
    return lambda v: v


class SQLiteWriter:
    """The recorder's writer for SQLite: plain ``sqlite3`` executemany in one transaction.

    The hot path of recording: SQLAlchemy's per-row type processing cost more than the insert
    itself. Statements and value conversions are derived from the schema's Table objects, so the
    rows are exactly what SQLAlchemy would have written (the export reads them back through it).
    """

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        for pragma in SQLITE_PRAGMAS:
            self._conn.execute(pragma)
        self._inserts: dict[str, tuple[str, list[tuple[str, Callable[[Any], Any]]]]] = {}

    def _insert_sql(self, table: sa.Table, names: Sequence[str]) -> tuple[str, list[tuple[str, Callable[[Any], Any]]]]:
        key = table.name + ":" + ",".join(names)
        found = self._inserts.get(key)
        if found is None:
            columns = ", ".join(names)
            marks = ", ".join("?" for _ in names)
            action = _UPSERT_END if table is interceptions else " DO NOTHING"
            sql = f"INSERT INTO {table.name} ({columns}) VALUES ({marks}) ON CONFLICT (id){action}"
            found = self._inserts[key] = (sql, [(n, _sqlite_converter(table.c[n])) for n in names])
        return found

    def write(self, batch: Sequence[Record]) -> None:
        rows = collect(batch)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table, table_rows in rows.inserts:
                sql, converters = self._insert_sql(table, list(table_rows[0]))
                conn.executemany(sql, [tuple(None if row[n] is None else conv(row[n]) for n, conv in converters)
                                       for row in table_rows])
            conn.executemany(f"UPDATE {interceptions.name} SET ended_at = ?, cost_usd = ? WHERE id = ?",
                             [(_sqlite_time(e["end_at"]), e["end_cost"], e["end_id"].hex) for e in rows.plain_ends])
            conn.executemany(f"UPDATE {interceptions.name} SET ended_at = ?, cost_usd = ?, metadata = ? WHERE id = ?",
                             [(_sqlite_time(e["end_at"]), e["end_cost"], json_dumps(e["end_metadata"]),
                               e["end_id"].hex) for e in rows.ends_with_metadata])
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back (a full disk does): a second ROLLBACK would
            # raise "no transaction is active" and hide the real error.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()


# Errors that say a batch's data is refused (it would fail again as it is), as opposed to the
# database being unreachable, full or busy (worth retrying the same batch later).
DATA_ERRORS = (sa.exc.IntegrityError, sa.exc.DataError, sqlite3.IntegrityError,
               sqlite3.DataError, ValueError, TypeError, OverflowError)


def refuses_data(exc: BaseException) -> bool:
    return isinstance(exc, DATA_ERRORS)


class BatchWriter:
    """Writes batches in one transaction each.

    SQLite: a ``SQLiteWriter`` in a worker thread, one hop per batch (aiosqlite would hop to its
    thread for every statement). PostgreSQL: the async engine (asyncpg needs no threads).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = SQLiteWriter(engine.url.database or "") if engine.dialect.name == "sqlite" else None

    async def write(self, batch: Sequence[Record]) -> None:
        if self._sqlite is not None:
            await asyncio.to_thread(self._sqlite.write, batch)
        else:
            await write_batch(self._engine, batch)

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
