"""Deleting users on real SQLite and PostgreSQL, and the migration that made it possible."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.config import postgres_async_url
from aibridge.store import users as store
from aibridge.store.db import DatabaseUnavailable, alembic_config, create_engine, migrate
from aibridge.store.schema import api_keys, interceptions, users
from tests.harness import Database


def _url(database: Database) -> str:
    return (postgres_async_url(database.postgres.url) if database.postgres
            else f"sqlite+aiosqlite:///{database.data_dir / 'aibridge.db'}")


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(_url(database))
    await migrate(eng)
    yield eng
    await eng.dispose()


async def _with_record(engine: AsyncEngine, username: str) -> store.User:
    user = await store.create_user(engine, username, "member")
    async with engine.begin() as conn:
        await conn.execute(interceptions.insert().values(
            id=uuid.uuid4(), initiator_id=user.id, provider="openai", provider_name="openai", model="m",
            started_at=store.now(), ended_at=store.now()))
    return user


async def test_delete_marks_revokes_and_frees_the_username(engine: AsyncEngine) -> None:
    user = await _with_record(engine, "Ann")
    first, _ = await store.create_api_key(engine, user.id, dt.timedelta(days=1))
    second, _ = await store.create_api_key(engine, user.id, dt.timedelta(days=1))
    assert sorted(await store.delete_user(engine, user.id)) == sorted([first.id, second.id])
    found = await store.get_api_key(engine, first.id)
    assert found is not None and found[0].revoked_at is not None            # in the same transaction
    with pytest.raises(store.NotFound):
        await store.get_user(engine, "Ann")
    with pytest.raises(store.NotFound):
        await store.delete_user(engine, user.id)
    assert await store.list_users(engine) == []
    listed = await store.list_users(engine, include_deleted=True)
    assert [(u.id, u.status) for u in listed] == [(user.id, "deleted")]

    again = await store.create_user(engine, "ann", "member")                 # free again, any case
    assert again.id != user.id and (await store.get_user(engine, "ann")).id == again.id
    with pytest.raises(store.Conflict):
        await store.create_user(engine, "ANN", "member")                     # unique among the living
    async with engine.connect() as conn:                                     # ... by the database too
        with pytest.raises(sa.exc.IntegrityError):
            await conn.execute(users.insert().values(id=uuid.uuid4(), username="ann", role="member",
                                                     created_at=store.now(), updated_at=store.now()))


async def test_the_migration_keeps_tokens_and_records(database: Database) -> None:
    """Upgrading a database that has users, tokens and records (SQLite rebuilds the users table)."""
    eng = create_engine(_url(database))
    try:
        async with eng.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0003"))
        user_id = uuid.uuid4()
        async with eng.begin() as conn:
            # 'OLD' beside 'old': allowed before create_user compared names without case.
            for ref, name in ((user_id, "old"), (uuid.uuid4(), "OLD")):
                await conn.execute(sa.text("INSERT INTO users (id, username, email, name, role, suspended, "
                                           "created_at, updated_at) VALUES (:id, :name, '', '', 'member', false, "
                                           ":t, :t)"),
                                   {"id": ref.hex if database.backend == "sqlite" else ref, "name": name,
                                    "t": store.now().replace(tzinfo=None)})
        await store.create_api_key(eng, user_id, dt.timedelta(days=1))
        await migrate(eng)
        async with eng.connect() as conn:
            keys = (await conn.execute(sa.select(sa.func.count()).select_from(api_keys))).scalar_one()
            pragma = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() if database.backend == "sqlite" \
                else 1
        assert keys == 1 and pragma == 1                                     # nothing cascaded; checks back on
        assert (await store.get_user(eng, "old")).status == "active"
    finally:
        await eng.dispose()


async def test_an_older_release_refuses_a_newer_schema_in_one_line(database: Database) -> None:
    """A rollback without restoring the backup: one clear error naming the revision, no traceback."""
    eng = create_engine(_url(database))
    try:
        await migrate(eng)
        async with eng.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099_future'"))
        with pytest.raises(DatabaseUnavailable, match="revision 0099_future, newer than this version"):
            await migrate(eng)
    finally:
        await eng.dispose()
