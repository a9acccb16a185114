"""Writing recorded items: one transaction per batch, idempotent so replays are safe."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import operator
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.store.db import SQLITE_PRAGMAS, json_dumps
from aibridge.store.records import (
    InterceptionEnd,
    InterceptionStart,
    OwnedObjectRecord,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsageRecord,
    ToolUsageRecord,
)
from aibridge.store.sanitize import clean_record
from aibridge.store.schema import (
    UTCDateTime,
    interceptions,
    model_thoughts,
    owned_objects,
    token_usages,
    tool_usages,
    user_prompts,
)

# Inserted in this order so children never precede their interception.
_INSERT_TABLES: tuple[tuple[type, sa.Table], ...] = (
    (InterceptionStart, interceptions),
    (TokenUsageRecord, token_usages),
    (PromptRecord, user_prompts),
    (ToolUsageRecord, tool_usages),
    (ThoughtRecord, model_thoughts),
    (OwnedObjectRecord, owned_objects),
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


def _row(record: Record) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _FIELDS[type(record)]}


def _end(record: InterceptionEnd) -> dict[str, Any]:
    end = {"end_id": record.id, "end_at": record.ended_at, "end_cost": record.cost_usd}
    if record.metadata:
        end["end_metadata"] = record.metadata
    return end


def collect(batch: Sequence[Record], row: Callable[[Record], dict[str, Any]] = _row,
            end: Callable[[InterceptionEnd], dict[str, Any]] = _end,
            pause: Callable[[], None] | None = None) -> Rows:
    """Rows for the batch, every value made storable first (store/sanitize.py). ``row`` and
    ``end`` give a record's values as the driver takes them; ``pause`` is called between records
    (a ``Pacer``, for a caller on a thread beside the event loop)."""
    rows: dict[type, list[dict[str, Any]]] = {kind: [] for kind, _ in _INSERT_TABLES}
    starts: dict[Any, dict[str, Any]] = {}
    plain_ends: list[dict[str, Any]] = []
    ends_with_metadata: list[dict[str, Any]] = []
    for record in map(clean_record, batch):
        if pause is not None:
            pause()
        if isinstance(record, InterceptionEnd):
            values = end(record)
            start = starts.get(record.id)
            if start is not None:       # started and ended within one batch: one INSERT, no UPDATE
                start["ended_at"], start["cost_usd"] = values["end_at"], values["end_cost"]
                if "end_metadata" in values:
                    start["metadata"] = values["end_metadata"]
            elif "end_metadata" in values:
                ends_with_metadata.append(values)
            else:
                plain_ends.append(values)
        else:
            values = row(record)
            rows[type(record)].append(values)
            if isinstance(record, InterceptionStart):
                values["ended_at"] = values["cost_usd"] = None
                starts[record.id] = values
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
    # The text SQLAlchemy's SQLite DATETIME stores (UTCDateTime keeps it in UTC):
    # "%Y-%m-%d %H:%M:%S.%f", written by isoformat (strftime costs several times more).
    if value.tzinfo is not dt.UTC:
        value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_converter(column: sa.Column[Any]) -> Callable[[Any], Any] | None:
    """How SQLAlchemy's types store a Python value on SQLite, for the columns this schema uses
    (None: as it is)."""
    kind = column.type
    if isinstance(kind, sa.Uuid):
        return lambda v: v.hex
    if isinstance(kind, UTCDateTime):
        return _sqlite_time
    if isinstance(kind, sa.JSON):
        return json_dumps
    if isinstance(kind, sa.Boolean):
        return int
    return None


class _RowMaker:
    """One record type's row for ``sqlite3``: its fields read in one C call, then only the
    columns whose stored form differs (UUIDs, times, JSON, booleans) converted."""

    def __init__(self, kind: type, table: sa.Table) -> None:
        self.names = _FIELDS[kind]
        self.get = operator.attrgetter(*self.names)
        self.convert = [(name, conv) for name in self.names
                        if (conv := _sqlite_converter(table.c[name])) is not None]

    def __call__(self, record: Record) -> dict[str, Any]:
        row = dict(zip(self.names, self.get(record), strict=True))
        for name, conv in self.convert:
            if (value := row[name]) is not None:
                row[name] = conv(value)
        return row


def _sqlite_end(record: InterceptionEnd) -> dict[str, Any]:
    end: dict[str, Any] = {"end_id": record.id.hex, "end_at": _sqlite_time(record.ended_at),
                           "end_cost": record.cost_usd}
    if record.metadata:
        end["end_metadata"] = json_dumps(record.metadata)
    return end


def _sqlite_insert(table: sa.Table, names: Sequence[str]) -> str:
    action = _UPSERT_END if table is interceptions else " DO NOTHING"
    return (f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) "
            f"ON CONFLICT (id){action}")


# Positional parameters: sqlite3 binds them faster than names, so the rows become tuples (in C).
_SQLITE_END_PLAIN = (f"UPDATE {interceptions.name} SET ended_at = ?, cost_usd = ? WHERE id = ?",
                     operator.itemgetter("end_at", "end_cost", "end_id"))
_SQLITE_END_WITH_METADATA = (f"UPDATE {interceptions.name} SET ended_at = ?, cost_usd = ?, metadata = ? WHERE id = ?",
                             operator.itemgetter("end_at", "end_cost", "end_metadata", "end_id"))


# The writer thread gives the event loop its turn (the GIL, and the core when the server has one)
# after this long at most: a batch of hundreds of records must not hold a request up for
# milliseconds (bench/README.md: p99 at concurrency 1). Measured on time, not records: what a
# record costs depends on the machine and the record.
YIELD_AFTER = 0.0003
# Rows per executemany call: the pacer is asked between calls.
STEP_ROWS = 32


class Pacer:
    """Called often by a thread beside the event loop; yields the GIL once ``YIELD_AFTER`` has
    passed since it last did (``time.sleep(0)`` lets a waiting thread take it)."""

    __slots__ = ("_due",)

    def __init__(self) -> None:
        self._due = time.perf_counter() + YIELD_AFTER

    def __call__(self) -> None:
        if time.perf_counter() >= self._due:
            time.sleep(0)
            self._due = time.perf_counter() + YIELD_AFTER


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
        # The index pages new rows land on stay in memory: no re-reading them for every batch.
        self._conn.execute("PRAGMA cache_size=-32768")
        self._rows = {kind: _RowMaker(kind, table) for kind, table in _INSERT_TABLES}
        self._inserts = {}
        for kind, table in _INSERT_TABLES:
            names = _FIELDS[kind] + (("ended_at", "cost_usd") if kind is InterceptionStart else ())
            self._inserts[table] = (_sqlite_insert(table, names), operator.itemgetter(*names))

    def _row(self, record: Record) -> dict[str, Any]:
        return self._rows[type(record)](record)

    def write(self, batch: Sequence[Record]) -> None:
        pace = Pacer()
        rows = collect(batch, self._row, _sqlite_end, pace)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table, table_rows in rows.inserts:
                sql, values = self._inserts[table]
                for start in range(0, len(table_rows), STEP_ROWS):
                    pace()
                    conn.executemany(sql, map(values, table_rows[start:start + STEP_ROWS]))
            for (sql, values), ends in ((_SQLITE_END_PLAIN, rows.plain_ends),
                                        (_SQLITE_END_WITH_METADATA, rows.ends_with_metadata)):
                if ends:
                    conn.executemany(sql, map(values, ends))
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
