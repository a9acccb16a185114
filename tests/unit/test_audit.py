"""The audit log's store on a real SQLite and PostgreSQL: a change and its row land together or not
at all; a refused change leaves only its row; filters; the retention purge (issue 22)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.recording.retention import RetentionTask
from aibridge.store import audit
from aibridge.store import users as user_store
from aibridge.store.audit import Actor, Entry, Filters
from aibridge.store.db import create_engine, migrate
from aibridge.store.schema import audit_logs, users
from tests.harness import Database
from tests.unit.test_retention import database_url

ACTOR = Actor(username="olga", ip="127.0.0.1", user_agent="pytest", request_id="req-1")


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url(database))
    await migrate(eng)
    yield eng
    await eng.dispose()


async def count(engine: AsyncEngine, table: sa.Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_a_change_lands_with_its_row(engine: AsyncEngine) -> None:
    async with audit.change(engine, ACTOR, "create", "user", resource_target="ann") as change:
        user = await user_store.create_user(change.conn, "ann", "member")
        change.resource_id = str(user.id)
    rows, total = await audit.search(engine, Filters())
    assert total == 1 and rows[0]["resource_target"] == "ann" and rows[0]["status_code"] == 201
    assert rows[0]["user"] == {"id": None, "username": "olga"} and rows[0]["request_id"] == "req-1"
    assert await count(engine, users) == 1


async def test_no_change_lands_when_its_row_cannot_be_written(engine: AsyncEngine) -> None:
    """The audit insert fails (an action the log refuses): the user written before it is rolled back."""
    with pytest.raises(ValueError, match="unknown audit action"):
        async with audit.change(engine, ACTOR, "frobnicate", "user") as change:
            await user_store.create_user(change.conn, "bea", "member")
    assert await count(engine, users) == 0
    assert await count(engine, audit_logs) == 0


async def test_a_refused_change_leaves_only_its_row(engine: AsyncEngine) -> None:
    class Refused(Exception):
        status = 409

    with pytest.raises(Refused):
        async with audit.change(engine, ACTOR, "create", "user", resource_target="cid") as change:
            await user_store.create_user(change.conn, "cid", "member")
            raise Refused
    assert await count(engine, users) == 0
    rows, _ = await audit.search(engine, Filters())
    assert [(r["resource_target"], r["status_code"]) for r in rows] == [("cid", 409)]


async def test_filters_and_the_purge(engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        for age_days, action, kind, who in ((0, "create", "user", "olga"), (1, "write", "price", "olga"),
                                            (100, "delete", "budget", "ivan"), (200, "write", "price", "ivan")):
            await audit.record(conn, Actor(username=who), Entry(action, kind, resource_target=f"t{age_days}"),
                               at=now - dt.timedelta(days=age_days))
    assert (await audit.search(engine, Filters(action="write")))[1] == 2
    assert (await audit.search(engine, Filters(resource_type="price", username="IVAN")))[1] == 1
    assert (await audit.search(engine, Filters(resource_target="t1")))[1] == 1
    assert (await audit.search(engine, Filters(date_from=now - dt.timedelta(days=2))))[1] == 2
    assert (await audit.search(engine, Filters(date_to=now - dt.timedelta(days=2))))[1] == 2
    page, total = await audit.search(engine, Filters(), limit=1, offset=1)
    assert total == 4 and page[0]["resource_target"] == "t1"
    assert await audit.purge(engine, 0) == 0                           # 0 keeps them forever
    task = RetentionTask(engine, 0, 90 * 86400.0)
    with caplog.at_level(logging.INFO, "aibridge.retention"):
        assert await task.purge_audit() == 2
    assert sorted(r["resource_target"] for r in (await audit.search(engine, Filters()))[0]) == ["t0", "t1"]
    assert "2 audit log rows" in caplog.text


async def test_purge_works_in_batches(engine: AsyncEngine) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    async with engine.begin() as conn:
        for i in range(7):
            await audit.record(conn, ACTOR, Entry("write", "price", resource_target=str(i)), at=old)
    assert await audit.purge(engine, 90 * 86400.0, batch_size=3) == 7
    assert await count(engine, audit_logs) == 0
