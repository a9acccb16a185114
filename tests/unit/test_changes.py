"""Change generations (store/changes.py) on real databases: every change path bumps its kind, the
listener brings changes made by another process into the shared cells, caches drop when they move."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.config import postgres_async_url
from aibridge.governance.rules import Configured, Governance
from aibridge.identity.auth import Authenticator, AuthError
from aibridge.store import governance as gov_store
from aibridge.store import users as user_store
from aibridge.store.changes import AUTH, GOVERNANCE, Changes, Generations, read
from aibridge.store.db import create_engine, migrate
from tests.harness import Database, wait_for


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    url = (postgres_async_url(database.postgres.url) if database.postgres
           else f"sqlite+aiosqlite:///{database.data_dir / 'aibridge.db'}")
    eng = create_engine(url)
    await migrate(eng)
    yield eng
    await eng.dispose()


async def moved(engine: AsyncEngine, kind: str, change: Callable[[], Awaitable[object]]) -> bool:
    before = await read(engine)
    await change()
    after = await read(engine)
    return after[kind] > before[kind] and all(after[k] == before[k] for k in after if k != kind)


async def test_every_change_path_bumps_its_generation(engine: AsyncEngine) -> None:
    user = await user_store.create_user(engine, "gene", "member")
    key, _ = await user_store.create_api_key(engine, user.id, dt.timedelta(days=1))
    assert await moved(engine, AUTH, lambda: user_store.set_suspended(engine, user.id, True))
    assert await moved(engine, AUTH, lambda: user_store.set_suspended(engine, user.id, False))
    assert await moved(engine, AUTH, lambda: user_store.revoke_api_key(engine, key.id))
    assert await moved(engine, AUTH, lambda: user_store.delete_user(engine, user.id))
    assert await moved(engine, GOVERNANCE, lambda: gov_store.set_price(engine, "m-*", (1, 2, 1, 1)))
    assert await moved(engine, GOVERNANCE, lambda: gov_store.delete_price(engine, "m-*"))
    assert await moved(engine, GOVERNANCE, lambda: gov_store.set_budget(engine, "role", "member", "day", 1))
    assert await moved(engine, GOVERNANCE, lambda: gov_store.delete_budget(engine, "role", "member"))
    assert await moved(engine, GOVERNANCE, lambda: gov_store.set_allowed(engine, "role", "member", ["m-*"]))
    assert await moved(engine, GOVERNANCE, lambda: gov_store.set_alias(engine, "a", "", "m-1"))


async def test_the_listener_brings_another_process_change_and_caches_drop(engine: AsyncEngine) -> None:
    shared = Generations()
    changes = Changes(engine, shared)
    authenticator = Authenticator(engine, shared)
    governance = Governance(engine, Configured(), shared, refresh=3600)
    user = await user_store.create_user(engine, "lis", "member")
    _, token = await user_store.create_api_key(engine, user.id, dt.timedelta(days=1))
    headers = {"Authorization": f"Bearer {token}"}
    await changes.start()
    try:
        assert (await authenticator.authenticate(headers)).username == "lis"          # cached now
        assert (await governance.rules()).aliases == {}
        other = create_engine(engine.url.render_as_string(hide_password=False))     # "the CLI"
        try:
            await user_store.set_suspended(other, user.id, True)
            await gov_store.set_alias(other, "fast", "", "m-fast")
            final = await read(other)
        finally:
            await other.dispose()

        async def caught_up() -> bool:
            return (shared.auth.value, shared.governance.value) == (final[AUTH], final[GOVERNANCE])
        assert await wait_for(caught_up, 1.0, interval=0.02)
        with pytest.raises(AuthError, match="suspended"):
            await authenticator.authenticate(headers)
        assert (await governance.rules()).aliases == {("fast", ""): "m-fast"}
    finally:
        await changes.close()
