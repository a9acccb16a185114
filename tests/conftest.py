from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.harness import BACKENDS, POSTGRES_URL, Database


def pytest_sessionstart(session: pytest.Session) -> None:
    """When PostgreSQL is asked for, it must be there: fail loudly instead of skipping."""
    if not POSTGRES_URL:
        return

    async def check() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
        await conn.close()

    try:
        asyncio.run(check())
    except Exception as exc:
        raise pytest.UsageError(f"AIBRIDGE_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {exc}") from exc


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    async with Database(request.param) as db:
        yield db


@pytest.fixture(params=BACKENDS, scope="module")
async def module_database(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    async with Database(request.param) as db:
        yield db
