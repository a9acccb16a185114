"""Several replicas (server processes) on one PostgreSQL and one Redis, a client alternating between them.

Replicas need a shared PostgreSQL: these tests run when AIBRIDGE_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from aibridge.store.db import create_engine, migrate
from aibridge.store.retention import ADVISORY_LOCK_KEY
from tests.e2e.conftest import bridge_env
from tests.e2e.test_limits import REDIS_URL, chat, next_second
from tests.e2e.test_workers import start_slow_stream
from tests.fakes.upstream import FakeUpstream
from tests.harness import POSTGRES_URL, Client, Database, ServerProcess, wait_for
from tests.unit.test_retention import database_url, insert

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="replicas share one PostgreSQL: "
                                                         "set AIBRIDGE_TEST_POSTGRES_URL")


@pytest.fixture
async def fake() -> Any:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
async def postgres() -> Any:
    async with Database("postgres") as db:
        yield db


async def start_replicas(db: Database, env: dict[str, str], count: int) -> list[ServerProcess]:
    """``count`` replicas started at once, each with its own data directory (journal), like separate hosts."""
    return list(await asyncio.gather(*(
        ServerProcess(db, env={**env, "CODER_AIBRIDGE_DATA_DIR": tempfile.mkdtemp(prefix="aibridge-replica-")}).start()
        for _ in range(count))))


@pytest.mark.parametrize("count", [2, 3])
async def test_replicas_share_identity_records_and_rate_limits(postgres: Database, fake: FakeUpstream,
                                                               count: int) -> None:
    env = {**bridge_env(fake), "CODER_AIBRIDGE_REDIS_URL": REDIS_URL, "CODER_AIBRIDGE_RATE_LIMIT": "4",
           "CODER_AIBRIDGE_MAX_CONCURRENCY": "1"}
    replicas = await start_replicas(postgres, env, count)
    try:
        banners = [r for r in replicas if r.admin_token]
        assert len(banners) == 1 and sum(r.output().count("shown this once") for r in replicas) == 1
        owner_token = banners[0].admin_token
        owners = [Client(r.url, owner_token) for r in replicas]            # the owner's token works on all
        status, _ = await owners[0].post("/api/v2/users", {"username": "nora", "role": "member"})
        assert status == 201
        status, made = await owners[-1].post("/api/v2/users/nora/keys/tokens", {})
        assert status == 201
        token = made["key"]

        for i in range(2 * count):                                         # alternating, under the rate limit
            assert (await chat(replicas[i % count], token))[0] == 200
            await asyncio.sleep(0.3)

        for owner in owners:                                               # every replica's records, everywhere
            async def all_recorded(owner: Client = owner) -> bool:
                status, body = await owner.get("/api/v2/aibridge/interceptions?limit=1")
                return status == 200 and body["count"] == 2 * count
            assert await wait_for(all_recorded, 10)

        await next_second()                                                # one shared budget per user
        statuses = [(await chat(replicas[i % count], token))[0] for i in range(3 * count)]   # ≈ 0.1 s
        assert sorted(statuses) == [200] * 4 + [429] * (3 * count - 4), statuses

        await next_second()                                                # concurrency: per replica
        async with aiohttp.ClientSession() as session:
            slow = await start_slow_stream(session, replicas[0], token)
            assert (await chat(replicas[0], token))[0] == 503
            assert [(await chat(r, token))[0] for r in replicas[1:]] == [200] * (count - 1)
            slow.close()

        await asyncio.sleep(1.1)                                           # a fresh rate window
        key_id = token.split("-")[0]
        status, _ = await owners[0].request("DELETE", f"/api/v2/users/nora/keys/{key_id}")
        assert status == 204
        revoked_at = time.monotonic()
        assert (await chat(replicas[0], token))[0] == 403                  # at once where it was revoked
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - revoked_at)))
        for replica in replicas[1:]:                                       # within 1 s elsewhere (DESIGN §2.6)
            assert (await chat(replica, token))[0] == 403
    finally:
        for replica in replicas:
            replica.stop()


async def test_replicas_purge_one_at_a_time(postgres: Database) -> None:
    """While one replica holds the purge lock, the others do not purge; alone, one does."""
    engine = create_engine(database_url(postgres))
    await migrate(engine)
    old = await insert(engine, [dt.datetime.now(dt.UTC) - dt.timedelta(days=90)] * 5)
    await engine.dispose()
    assert postgres.postgres is not None
    holder = await asyncpg.connect(postgres.postgres.url)
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_LOCK_KEY)
        replicas = await start_replicas(postgres, {}, 3)
        try:
            await asyncio.sleep(1.0)
            assert await holder.fetchval("SELECT count(*) FROM aibridge_interceptions") == len(old)
            assert not any("retention purge deleted" in r.output() for r in replicas)
        finally:
            for replica in replicas:
                replica.stop()
        await holder.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
        replicas = await start_replicas(postgres, {}, 3)
        try:
            async def purged() -> bool:
                return bool(await holder.fetchval("SELECT count(*) FROM aibridge_interceptions") == 0)
            assert await wait_for(purged, 10)
            assert not any("retention purge failed" in r.output() for r in replicas)
        finally:
            for replica in replicas:
                replica.stop()
    finally:
        await holder.close()
