"""Engine creation and migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aibridge.config import Settings, redact_url
from aibridge.store.private import secure_sqlite_file

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        secure_sqlite_file(Path(path))
        engine = create_async_engine(url, connect_args={"timeout": 30}, json_serializer=json_dumps)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, json_serializer=json_dumps,
                               connect_args={"timeout": CONNECT_TIMEOUT,
                                             "async_creator_fn": _OpeningGate(OPENING_AT_ONCE).connect})


CONNECT_TIMEOUT = 10
OPENING_AT_ONCE = 4


class _OpeningGate:
    """At most ``limit`` PostgreSQL connections being opened at once, per event loop.

    A busy server starts new backends one after another, so a burst that asks for the whole pool
    at once (20 connections) would have its last handshakes wait for all the others — inside
    their own connect timeout — and fail with TimeoutError on a loaded machine. Queued here, each
    handshake's timeout counts only its own handshake; waiting for the pool is bounded by the
    pool's checkout timeout as before. (``async_creator_fn`` is the hook SQLAlchemy's own
    ``async_creator`` uses; the URL's parameters still reach ``asyncpg.connect``.)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())

    async def connect(self, *args: Any, **kwargs: Any) -> Any:
        gate = self.gates.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(self.limit))
        async with gate:
            return await asyncpg.connect(*args, **kwargs)


class DatabaseUnavailable(Exception):
    """The configured database cannot be reached or refuses us; the message says why, in one line."""


class SchemaTooNew(DatabaseUnavailable):
    """The database was migrated by a newer release (a rollback without restoring the backup)."""


def database_label(settings: Settings) -> str:
    """Which database a command works on, for the operator (no password)."""
    if settings.postgres_url:
        return f"PostgreSQL {redact_url(settings.postgres_url)}"
    return f"SQLite {settings.data_dir / 'aibridge.db'}"


def unavailable_message(settings: Settings, exc: DatabaseUnavailable) -> str:
    """One line naming the setting to fix and the cause."""
    too_new = isinstance(exc, SchemaTooNew)
    if settings.postgres_url:
        return (f"--postgres-url (CODER_PG_CONNECTION_URL): {'cannot use' if too_new else 'cannot connect to'} "
                f"{redact_url(settings.postgres_url)}: {exc}")
    return (f"--data-dir (CODER_AIBRIDGE_DATA_DIR): {'cannot use' if too_new else 'cannot open'} "
            f"{settings.data_dir / 'aibridge.db'}: {exc}")


async def check_connection(engine: AsyncEngine) -> None:
    """Open one connection, turning the driver's many failure types into DatabaseUnavailable."""
    try:
        async with engine.connect():
            pass
    except TimeoutError:
        raise DatabaseUnavailable(f"no answer within {CONNECT_TIMEOUT}s") from None
    except OSError as exc:           # refused, unknown host, unreadable SQLite file
        raise DatabaseUnavailable(exc.strerror or str(exc) or type(exc).__name__) from None
    except DBAPIError as exc:        # unknown role or database, bad password, …
        cause = exc.orig if exc.orig is not None else exc
        raise DatabaseUnavailable(str(cause).splitlines()[0] if str(cause) else type(cause).__name__) from None


SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(sync: Connection) -> str:
    """Upgrade to the newest revision; what was done, in words for the log."""
    before = MigrationContext.configure(sync).get_current_revision()
    config = alembic_config(sync)
    if before is not None and not _known(config, before):
        # A rollback to an older release: it must not touch (or half-understand) a newer schema.
        raise SchemaTooNew(f"its schema is at revision {before}, newer than this version of AI Bridge "
                                  "knows: run the release that migrated it, or restore the backup taken "
                                  "before the upgrade (docs/deployment.md, Upgrades)")
    command.upgrade(config, "head")
    after = MigrationContext.configure(sync).get_current_revision()
    if before is None:
        return f"created the database schema (revision {after})"
    if before != after:
        return f"migrated the database schema from revision {before} to {after}"
    return f"database schema is up to date (revision {after})"


def _known(config: Config, revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(config).get_revision(revision) is not None
    except CommandError:
        return False


async def migrate(engine: AsyncEngine) -> str:
    """Bring the schema to the newest revision (idempotent; safe at every start); what was done."""
    await check_connection(engine)
    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by rebuilding it; dropping the old copy must not fire the
            # ON DELETE CASCADE of the rows pointing at it. The pragma works only outside a
            # transaction, and the pysqlite driver begins none before this statement.
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            async with conn.begin():
                if not sqlite:
                    # Several replicas may start at once: one migrates, the others wait here.
                    await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7231460001)")
                return await conn.run_sync(_upgrade)
        finally:
            if sqlite:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()
