"""Retention purge on real databases (SQLite and PostgreSQL), with synthetic records."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.config import postgres_async_url
from aibridge.recording.retention import RetentionTask
from aibridge.store import owned, turns
from aibridge.store import records as rec
from aibridge.store import users as user_store
from aibridge.store.db import create_engine, migrate
from aibridge.store.retention import ADVISORY_LOCK_KEY, purge, purge_detailed
from aibridge.store.schema import CHILD_TABLES, interceptions, response_continuations
from aibridge.store.writer import write_batch
from tests.harness import POSTGRES_URL, Database

DAY = 86400.0
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def database_url(database: Database) -> str:
    if database.postgres:
        return postgres_async_url(database.postgres.url)
    return f"sqlite+aiosqlite:///{database.data_dir / 'aibridge.db'}"


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url(database))
    await migrate(eng)
    yield eng
    await eng.dispose()


def interception_records(user_id: uuid.UUID, started: dt.datetime) -> tuple[uuid.UUID, list[rec.Record]]:
    """One finished interception with one row in every child table."""
    iid = uuid.uuid4()
    return iid, [
        rec.InterceptionStart(iid, user_id, "anthropic", "anthropic", "messages", "claude-x", "Claude Code",
                              "s1", "ua", {}, started_at=started),
        rec.PromptRecord(iid, "", "hello", {}, created_at=started),
        rec.TokenUsageRecord(iid, "msg_1", 10, 5, 3, 1, {}, created_at=started),
        rec.ToolUsageRecord(iid, "msg_1", "toolu_1", "bash", "{}", False, None, None, {}, created_at=started),
        rec.ThoughtRecord(iid, "hmm", {}, created_at=started),
        rec.InterceptionEnd(iid, ended_at=started + dt.timedelta(seconds=3)),
    ]


async def insert(engine: AsyncEngine, starts: list[dt.datetime]) -> list[uuid.UUID]:
    user = await user_store.create_user(engine, f"u{uuid.uuid4().hex[:8]}", "member")
    ids: list[uuid.UUID] = []
    batch: list[rec.Record] = []
    for started in starts:
        iid, records = interception_records(user.id, started)
        ids.append(iid)
        batch.extend(records)
        if len(batch) >= 3000:
            await write_batch(engine, batch)
            batch = []
    if batch:
        await write_batch(engine, batch)
    return ids


async def remaining(engine: AsyncEngine) -> tuple[set[uuid.UUID], dict[str, set[uuid.UUID]]]:
    """Interception ids left, and for each child table the interception ids its rows point at."""
    async with engine.connect() as conn:
        ids = set((await conn.execute(sa.select(interceptions.c.id))).scalars())
        children = {t.name: set((await conn.execute(sa.select(t.c.interception_id))).scalars())
                    for t in CHILD_TABLES}
    return ids, children


async def test_purge_deletes_old_interceptions_with_all_children(engine: AsyncEngine) -> None:
    old = await insert(engine, [NOW - dt.timedelta(days=d) for d in (61, 90, 400)])
    new = await insert(engine, [NOW - dt.timedelta(days=d) for d in (0, 59.9)])
    assert await purge(engine, 60 * DAY, now=NOW) == len(old)
    ids, children = await remaining(engine)
    assert ids == set(new)
    for table, pointed in children.items():
        assert pointed == set(new), table
    assert await purge(engine, 60 * DAY, now=NOW) == 0     # nothing left to do


async def test_retention_zero_keeps_everything(engine: AsyncEngine) -> None:
    ids = await insert(engine, [NOW - dt.timedelta(days=d) for d in (1, 100, 1000)])
    assert await purge(engine, 0, now=NOW) == 0
    assert (await remaining(engine))[0] == set(ids)


async def test_a_year_of_records_keeps_exactly_the_last_60_days(engine: AsyncEngine) -> None:
    # Four interceptions a day for a year, at 01:00, 07:00, 13:00 and 19:00 before NOW's day offset.
    starts = [NOW - dt.timedelta(days=day, hours=hour) for day in range(365) for hour in (1, 7, 13, 19)]
    ids = await insert(engine, starts)
    cutoff = NOW - dt.timedelta(days=60)
    keep = {iid for iid, started in zip(ids, starts, strict=True) if started >= cutoff}
    assert len(keep) == 60 * 4
    # Small batches: the purge must loop over many transactions and stop exactly at the cutoff.
    assert await purge(engine, 60 * DAY, now=NOW, batch_size=97) == len(ids) - len(keep)
    left, children = await remaining(engine)
    assert left == keep
    assert all(pointed == keep for pointed in children.values())


@pytest.mark.skipif(not POSTGRES_URL, reason="advisory locks are PostgreSQL's: needs AIBRIDGE_TEST_POSTGRES_URL")
async def test_postgres_purges_on_one_replica_at_a_time() -> None:
    async with Database("postgres") as database:
        assert database.postgres is not None
        engine = create_engine(database_url(database))
        await migrate(engine)
        try:
            await _one_replica_at_a_time(engine, database.postgres.url)
        finally:
            await engine.dispose()


async def _one_replica_at_a_time(engine: AsyncEngine, url: str) -> None:
    ids = await insert(engine, [NOW - dt.timedelta(days=100)])
    other_replica = await asyncpg.connect(url, timeout=10)
    try:
        assert await other_replica.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_LOCK_KEY)
        assert await purge(engine, 60 * DAY, now=NOW) == 0      # skipped, not waited
        assert (await remaining(engine))[0] == set(ids)
        await other_replica.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
        assert await purge(engine, 60 * DAY, now=NOW) == 1
        # The purge released its lock: another session can take it at once.
        assert await other_replica.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_LOCK_KEY)
    finally:
        await other_replica.close()


async def test_task_reports_what_it_deleted(engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    await insert(engine, [dt.datetime.now(dt.UTC) - dt.timedelta(days=d) for d in (40, 50, 1)])
    task = RetentionTask(engine, 30 * DAY)
    with caplog.at_level(logging.INFO, logger="aibridge.retention"):
        result = await task.run_once()
    assert result is not None and result.interceptions == 2
    assert result.children == {t.name: 2 for t in CHILD_TABLES}
    assert task.purged_total == 2
    line = next(r for r in caplog.records if "retention purge deleted" in r.getMessage())
    assert line.__dict__["purged_interceptions"] == 2
    assert line.__dict__["aibridge_token_usages"] == 2


async def test_old_responses_continuations_are_purged(engine: AsyncEngine) -> None:
    """The MCP addon's shown id → last upstream id rows (issue 20, item 1.4) go with the records."""
    await turns.remember(engine, "resp_old", "resp_old_last")
    await turns.remember(engine, "resp_new", "resp_new_last")
    async with engine.begin() as conn:
        await conn.execute(response_continuations.update().where(response_continuations.c.shown_id == "resp_old")
                           .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40)))
    result = await purge_detailed(engine, 30 * DAY)
    assert result.continuations == 1
    assert await turns.upstream_id(engine, "resp_old") is None
    assert await turns.upstream_id(engine, "resp_new") == "resp_new_last"


async def test_task_survives_a_database_failure(caplog: pytest.LogCaptureFixture) -> None:
    broken = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        task = RetentionTask(broken, 30 * DAY)
        with caplog.at_level(logging.WARNING, logger="aibridge.retention"):
            assert await task.run_once() is None
        assert any("retention purge failed" in r.getMessage() for r in caplog.records)
    finally:
        await broken.dispose()


async def test_purge_forgets_old_owners_of_stored_objects(engine: AsyncEngine) -> None:
    user = await user_store.create_user(engine, "owner1", "member")
    await write_batch(engine, [
        rec.OwnedObjectRecord("resp_old", "response", "openai", user.id, NOW - dt.timedelta(days=61)),
        rec.OwnedObjectRecord("conv_new", "conversation", "openai", user.id, NOW - dt.timedelta(days=1))])
    # the first maker stays (an id is never given twice; a replayed record changes nothing)
    await write_batch(engine, [rec.OwnedObjectRecord("resp_old", "response", "openai", uuid.uuid4())])
    assert await owned.owners(engine, ["resp_old", "conv_new"]) == {"resp_old": user.id, "conv_new": user.id}
    await purge(engine, 60 * DAY, now=NOW)
    assert await owned.owners(engine, ["resp_old", "conv_new"]) == {"conv_new": user.id}
