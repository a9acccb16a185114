"""Records are never lost (issue 11, items 1-5): real server processes, SQLite and PostgreSQL.

The fault suite's short version: a database cut under load, a full disk, kill -9 under load and
a torn journal; after each, every answered request is in the export. The long version (a 60 s
outage, a kill -9 soak) is bench/faults.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from aibridge.recording.journal import encode_record
from aibridge.store import records as rec
from tests.e2e.conftest import bridge_env
from tests.e2e.faults import CuttableLink, FullDisk, ask, exported, health, wait_exported
from tests.fakes.upstream import FakeUpstream
from tests.harness import BACKENDS, Client, Database, ServerProcess, free_port, wait_for


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(record=False) as upstream:
        # "slow" streams for a minute here: server starts on a busy machine take seconds.
        slow = upstream.scenarios[("messages", "slow")]
        upstream.scenarios = {**upstream.scenarios, ("messages", "slow"): dataclasses.replace(slow, interval=1.2)}
        yield upstream


async def _started(database: Database, fake: FakeUpstream, **env: str) -> tuple[ServerProcess, str]:
    server = await ServerProcess(database, env={**bridge_env(fake), **env}).start()
    return server, server.create_user("rita")


def _kill9(server: ServerProcess) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)


# ---------------------------------------------------------------- 1. values the database cannot hold

async def test_a_nul_in_a_prompt_is_stored_cleaned_and_recording_goes_on(database: Database,
                                                                         fake: FakeUpstream) -> None:
    """PostgreSQL text cannot hold NUL: the batch failed, the journal could not serialize asyncpg's
    UUID, the recorder task died and nothing was recorded any more."""
    server, token = await _started(database, fake)
    owner = Client(server.url, server.admin_token)
    try:
        async with aiohttp.ClientSession() as session:
            assert await ask(session, server, token, "a\u0000b")
            assert await ask(session, server, token, "after the NUL")
        found = await wait_exported(owner, {"a\ufffdb", "after the NUL"}, timeout=15)
        assert {"a\ufffdb", "after the NUL"} <= set(found)
        status, body = await health(server)
        assert status == 200 and body["recording"]["ok"], body
        assert body["recording"]["rejected"] == 0 and body["recording"]["dropped"] == 0
        assert "Traceback" not in server.output()
    finally:
        server.stop()


# ---------------------------------------------------------------- 2. a full disk

async def test_a_full_disk_keeps_records_in_memory_and_writes_them_when_space_returns(
        database: Database, fake: FakeUpstream) -> None:
    """The data directory (SQLite database, WAL and journal) is on a small tmpfs of its own that
    the test fills to ENOSPC (``FullDisk``; needs root). Before: ENOSPC escaped the writer and
    killed it, and SQLite's error was hidden behind "cannot rollback - no transaction is active"."""
    with FullDisk() as disk:
        data_dir = disk.path / "data"
        server, token = await _started(database, fake, CODER_AIBRIDGE_DATA_DIR=str(data_dir))
        owner = Client(server.url, server.admin_token)
        try:
            # Big prompts: SQLite must grow its files (a write that fits in the WAL's old pages succeeds).
            prompts = {f"full disk {i} " + "x" * 200_000 for i in range(12)}
            async with aiohttp.ClientSession() as session:
                assert await ask(session, server, token, "warm the token cache")
                await wait_exported(owner, {"warm the token cache"})
                disk.fill()
                answered = await asyncio.gather(*(ask(session, server, token, p, stream=i % 2 == 0)
                                                  for i, p in enumerate(sorted(prompts))))
            assert all(answered)

            async def failing() -> Any:
                # The journal fails at once; SQLite when the writer's next batch is due (the linger).
                _, body = await health(server)
                down = not body["recording"]["journal"]["ok"] and (
                    database.backend != "sqlite" or not body["recording"]["database"]["ok"])
                return body if down else None
            body = await wait_for(failing, 10)
            assert body, "the journal failure is not visible in /healthz"
            assert "No space left on device" in body["recording"]["journal"]["error"]
            if database.backend == "sqlite":
                assert body["recording"]["database"]["ok"] is False
                assert "full" in body["recording"]["database"]["error"]      # SQLite's own words
            disk.free()
            found = await wait_exported(owner, prompts, timeout=30)
            assert prompts <= set(found)
            assert "cannot rollback" not in server.output()
            assert server.output().count("recording: journal append failed") == 1     # once per outage
        finally:
            server.stop()


# ---------------------------------------------------------------- 3. a torn journal line

async def test_a_torn_journal_line_loses_only_that_line(database: Database, fake: FakeUpstream) -> None:
    """Before: one unreadable line moved the whole journal to records.corrupt (overwritten by the
    next corruption) and nothing in it was replayed."""
    server, token = await _started(database, fake)
    _, me = await Client(server.url, token).get("/api/v2/users/me")
    server.stop()
    journal = database.data_dir / "journal"
    journal.mkdir(exist_ok=True)
    user = uuid.UUID(me["id"])

    def interception(prompt: str) -> bytes:
        iid = uuid.uuid4()
        records: list[rec.Record] = [
            rec.InterceptionStart(iid, user, "anthropic", "anthropic", "messages", "claude-x", "Unknown", None,
                                  "ua", {}),
            rec.PromptRecord(iid, "", prompt, {}), rec.InterceptionEnd(iid)]
        return b"".join(encode_record(r) + b"\n" for r in records)

    # A crash mid-append tears the last line of one segment; a second segment has a torn line too.
    first = interception("before the tear") + interception("torn away")[:70] + b"\n"
    second = interception("second segment") + b'{"type": "PromptRec\n' + interception("after the tear")
    (journal / "records.0000000001.jsonl").write_bytes(first)
    (journal / "records.0000000002.jsonl").write_bytes(second)

    again = await ServerProcess(database, env=bridge_env(fake)).start()
    try:
        found = await wait_exported(Client(again.url, token), {"before the tear", "second segment",
                                                               "after the tear"}, timeout=15)
        assert {"before the tear", "second segment", "after the tear"} <= set(found)
        corrupt = (journal / "records.corrupt").read_bytes()
        assert corrupt.count(b"\n# ") + corrupt.startswith(b"# ") == 2      # both kept, none overwritten
        assert b'{"type": "PromptRec' in corrupt
        assert not list(journal.glob("records.*.jsonl")) or all(
            p.stat().st_size == 0 for p in journal.glob("records.*.jsonl"))
    finally:
        again.stop()


# ---------------------------------------------------------------- 4. in flight at kill -9

async def _slow_stream(server: ServerProcess, token: str,
                       prompt: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientResponse]:
    """Start a slow stream and return once its first text arrived (keep both to keep it open)."""
    session = aiohttp.ClientSession()
    resp = await session.post(server.url + "/api/v2/aibridge/anthropic/v1/messages", headers={"x-api-key": token},
                              json={"model": "claude-scenario-slow", "max_tokens": 100, "stream": True,
                                    "messages": [{"role": "user", "content": prompt}]})
    await resp.content.readuntil(b"content_block_delta")
    return session, resp


async def test_interceptions_in_flight_at_kill9_are_closed_as_interrupted(database: Database,
                                                                          fake: FakeUpstream) -> None:
    """Before: they stayed open forever (ended_at NULL), invisible in the export."""
    server, token = await _started(database, fake)
    owner_token = server.admin_token
    session, _open = await _slow_stream(server, token, "cut short")
    try:
        await asyncio.sleep(0.5)         # the start is journaled within a batch's linger
        _kill9(server)
    finally:
        await session.close()
    again = await ServerProcess(database, env=bridge_env(fake)).start()
    try:
        found = await wait_exported(Client(again.url, owner_token), {"cut short"}, timeout=15)
        record = found["cut short"]
        assert record["ended_at"] and record["metadata"]["outcome"] == "interrupted"
        assert record["metadata"]["interrupted"]["detected_at"] >= record["started_at"]
        assert record["ended_at"] >= record["started_at"]
    finally:
        again.stop()


@pytest.mark.parametrize("database", [b for b in BACKENDS if b == "postgres"], indirect=True)
async def test_a_live_replicas_interception_is_not_closed_by_another_replica(database: Database,
                                                                             fake: FakeUpstream) -> None:
    """Several replicas on one PostgreSQL: a replica starting up closes only what dead ones left."""
    first, token = await _started(database, fake)
    owner = first.admin_token
    session, _open = await _slow_stream(first, token, "still running")
    second = await ServerProcess(database, env={**bridge_env(fake), "CODER_AIBRIDGE_DATA_DIR":
                                                str(database.data_dir / "second")}).start()
    try:
        await asyncio.sleep(1.0)
        assert "still running" not in await exported(Client(second.url, owner))
        _kill9(first)                    # now it is dead: the next replica to start closes it
        third = await ServerProcess(database, env={**bridge_env(fake), "CODER_AIBRIDGE_DATA_DIR":
                                                   str(database.data_dir / "third")}).start()
        third.stop()
        found = await wait_exported(Client(second.url, owner), {"still running"}, timeout=10)
        assert found["still running"]["metadata"]["outcome"] == "interrupted"
    finally:
        await session.close()
        second.stop()
        first.kill()


# ---------------------------------------------------------------- 5. the durability point

@pytest.mark.parametrize("stream", [False, True])
async def test_an_answered_request_survives_an_immediate_kill9(database: Database, fake: FakeUpstream,
                                                               stream: bool) -> None:
    """Before: records waited up to a batch's linger in memory, so a request answered ~0.1 s
    before a kill -9 lost its records. Now the answer's end is the durability point."""
    server, token = await _started(database, fake)
    owner_token = server.admin_token
    async with aiohttp.ClientSession() as session:
        assert await ask(session, server, token, f"answered then killed {stream}", stream=stream)
        _kill9(server)
    again = await ServerProcess(database, env=bridge_env(fake)).start()
    try:
        found = await wait_exported(Client(again.url, owner_token), {f"answered then killed {stream}"})
        record = found[f"answered then killed {stream}"]
        assert record["metadata"].get("outcome") is None and record["ended_at"]
        assert sum(u["output_tokens"] for u in record["token_usages"]) > 0
    finally:
        again.stop()


# ---------------------------------------------------------------- the fault suite (short version)

@pytest.mark.parametrize("database", [b for b in BACKENDS if b == "postgres"], indirect=True)
async def test_database_cut_under_load_loses_no_answered_request(database: Database, fake: FakeUpstream) -> None:
    """PostgreSQL unreachable for a few seconds while requests keep coming (through a relay the
    test cuts, never the shared PostgreSQL): /readyz says 503, /healthz says why, and afterwards
    every answered request is in the export. Before: the recorder died at the first failure."""
    assert database.postgres is not None
    link = await CuttableLink("127.0.0.1", 5432).start()
    relayed = database.postgres.url.replace("127.0.0.1:5432", f"127.0.0.1:{link.port}")
    assert relayed != database.postgres.url
    metrics_address = f"127.0.0.1:{free_port()}"
    server, token = await _started(database, fake, CODER_PG_CONNECTION_URL=relayed,
                                   CODER_PROMETHEUS_ENABLE="true", CODER_PROMETHEUS_ADDRESS=metrics_address)
    owner = Client(server.url, server.admin_token)
    answered: set[str] = set()
    try:
        async with aiohttp.ClientSession() as session:
            assert await ask(session, server, token, "before the cut")     # the token is cached now
            await wait_exported(owner, {"before the cut"})
            link.cut()

            async def load(worker: int) -> None:
                for i in range(8):
                    prompt = f"during the cut {worker}-{i}"
                    if await ask(session, server, token, prompt, stream=i % 2 == 1):
                        answered.add(prompt)
                    await asyncio.sleep(0.1)
            await asyncio.gather(*(load(w) for w in range(4)))
            status, ready = await health(server, "/readyz")
            assert status == 503 and ready["status"] == "unavailable", ready
            status, body = await health(server)
            assert status == 200 and body["recording"]["database"]["ok"] is False, body
            assert body["recording"]["database"]["error"]
            async with session.get(f"http://{metrics_address}/metrics") as resp:
                metrics = await resp.text()
            failures = re.search(r'^coder_aibridged_recording_failures_total\{stage="database"\} (\S+)$', metrics, re.M)
            assert failures and float(failures.group(1)) >= 1, metrics
            assert re.search(r"^coder_aibridged_records_pending \d", metrics, re.M)
            link.restore()
        assert len(answered) == 32
        found = await wait_exported(owner, answered, timeout=30)
        assert answered <= set(found), sorted(answered - set(found))
        status, ready = await health(server, "/readyz")
        assert status == 200
        assert server.output().count("recording: database write failed") == 1       # once per outage
    finally:
        server.stop()
        await link.stop()


async def test_kill9_under_load_loses_no_answered_request(database: Database, fake: FakeUpstream) -> None:
    server, token = await _started(database, fake)
    owner_token = server.admin_token
    answered: set[str] = set()
    async with aiohttp.ClientSession() as session:

        async def load(worker: int) -> None:
            for i in range(50):
                prompt = f"load {worker}-{i}"
                if await ask(session, server, token, prompt, stream=i % 2 == 0):
                    answered.add(prompt)

        workers = [asyncio.create_task(load(w)) for w in range(6)]
        await wait_for(lambda: asyncio.sleep(0, len(answered) >= 40), 20)
        _kill9(server)
        await asyncio.gather(*workers)
    assert len(answered) >= 40
    again = await ServerProcess(database, env=bridge_env(fake)).start()
    try:
        found = await wait_exported(Client(again.url, owner_token), answered, timeout=20)
        assert answered <= set(found), sorted(answered - set(found))
        assert [found[p]["metadata"] for p in answered if found[p]["metadata"].get("outcome")] == []
        # Cut mid-answer: closed as interrupted (or ended, when only the client missed the end).
        unanswered = {p for p in found if p.startswith("load ")} - answered
        assert all(found[p]["metadata"].get("outcome") in (None, "interrupted", "canceled") for p in unanswered)
    finally:
        again.stop()

