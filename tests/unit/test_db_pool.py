"""The PostgreSQL pool under a burst: connections opened together must not time out together.

A saturated PostgreSQL (a busy 2-core machine) starts new backends one after another, so when
a burst asks for 20 connections at once the last handshake finishes only after the 19 before
it. A loopback proxy in front of the real server plays that: it lets one handshake through
at a time, each taking HANDSHAKE seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from aibridge.config import postgres_async_url
from aibridge.store import db
from tests.harness import BACKENDS, Database

HANDSHAKE = 0.15          # seconds the "server" needs to start one backend
BURST = 20                # the pool's whole size (10 + 10 overflow)
TIMEOUT = 1.5             # < BURST * HANDSHAKE: a burst opened all at once cannot make it


class SerialStartProxy:
    """Relays to PostgreSQL, starting one connection at a time (like a saturated postmaster)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.starting = asyncio.Lock()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self.starting:
            await asyncio.sleep(HANDSHAKE)
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


@pytest.fixture
async def slow_url(database: Database) -> AsyncIterator[str]:
    assert database.postgres is not None
    parts = urlsplit(database.postgres.url)
    proxy = SerialStartProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await proxy.start()
    yield postgres_async_url(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}").geturl())
    await proxy.close()


@pytest.mark.parametrize("database", [b for b in BACKENDS if b == "postgres"], indirect=True)
async def test_a_burst_of_new_connections_does_not_time_out_on_a_slow_server(
        slow_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "CONNECT_TIMEOUT", TIMEOUT)
    engine = db.create_engine(slow_url)
    everyone_in = asyncio.Barrier(BURST)       # hold every connection until all are open

    async def use_one() -> int:
        async with engine.connect() as conn:
            value = (await conn.execute(sa.select(sa.literal(1)))).scalar_one()
            await everyone_in.wait()
            return int(value)

    try:
        assert await asyncio.wait_for(asyncio.gather(*(use_one() for _ in range(BURST))), 60) == [1] * BURST
    finally:
        await engine.dispose()
