"""``--workers N``: one port, several processes, and what must stay true for the server as a whole."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import time
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aibridge.store.db import create_engine, migrate
from tests.e2e.conftest import bridge_env
from tests.e2e.test_limits import chat, next_second
from tests.fakes.upstream import FakeUpstream, get_scenario
from tests.harness import Client, Database, ServerProcess, wait_for
from tests.unit.test_retention import database_url, insert

CLK_TCK = os.sysconf("SC_CLK_TCK")
SLOW = {"model": "claude-scenario-slow", "max_tokens": 10, "stream": True,
        "messages": [{"role": "user", "content": "slowly"}]}


@pytest.fixture
async def fake() -> Any:
    async with FakeUpstream() as upstream:
        yield upstream


def worker_pids(server: ServerProcess) -> dict[int, int]:
    """The newest pid of every worker slot, from the supervisor's log."""
    return {int(slot): int(pid) for slot, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", server.output())}


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rpartition(b")")[2].split()
    return int(fields[11]) + int(fields[12])


async def start_slow_stream(session: aiohttp.ClientSession, server: ServerProcess,
                            token: str) -> aiohttp.ClientResponse:
    resp = await session.post(f"{server.url}/api/v2/aibridge/anthropic/v1/messages", headers={"x-api-key": token},
                              json=SLOW)
    assert resp.status == 200
    await resp.content.readuntil(b"content_block_delta")
    return resp


async def scrape(url: str, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a fresh scrape (a new connection: any worker may answer), as the owner
    (``/metrics`` on the main port needs an owner's or auditor's token)."""
    async with aiohttp.ClientSession() as session, \
            session.get(url, headers={"Coder-Session-Token": token}) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


async def test_one_port_many_workers_prepared_once(database: Database, fake: FakeUpstream) -> None:
    """First owner and its token once, migrations and the retention purge once, every worker serving."""
    env = {**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": "3"}
    server = await ServerProcess(database, env=env).start()
    try:
        token = server.create_user("hana")
        pids = worker_pids(server)
        assert sorted(pids) == [0, 1, 2] and len(set(pids.values())) == 3
        before = {slot: cpu_ticks(pid) for slot, pid in pids.items()}
        for _ in range(3):
            results = await asyncio.gather(*(chat(server, token) for _ in range(30)))     # 90 connections
            assert {r[0] for r in results} == {200}
        assert all(cpu_ticks(pid) > before[slot] for slot, pid in pids.items()), "a worker served nothing"
        output = server.output()
        assert output.count("shown this once") == 1
        status, users = await Client(server.url, server.admin_token).get("/api/v2/users")
        assert status == 200 and [u["username"] for u in users["users"] if u["role"] == "owner"] == ["admin"]
        assert output.count("database schema") == 1                   # migrated once, by the supervisor
    finally:
        assert server.stop() == 0

    engine = create_engine(database_url(database))
    await migrate(engine)
    old = await insert(engine, [dt.datetime.now(dt.UTC) - dt.timedelta(days=90)] * 3)
    await engine.dispose()
    again = await ServerProcess(database, env=env).start()
    try:
        async def purged() -> list[str]:
            return re.findall(r"retention purge deleted (\d+)", again.output())
        assert await wait_for(purged, 10) == [str(len(old))]
        assert again.output().count("runs the retention purge") == 1
    finally:
        assert again.stop() == 0


async def test_a_dead_worker_is_replaced_and_its_counts_kept(database: Database, fake: FakeUpstream) -> None:
    env = {**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": "2", "CODER_PROMETHEUS_ENABLE": "true",
           "CODER_PROMETHEUS_ADDRESS": "127.0.0.1:0"}
    server = await ServerProcess(database, env=env).start()
    try:
        token = server.create_user("ivan")
        results = await asyncio.gather(*(chat(server, token) for _ in range(20)))
        assert {r[0] for r in results} == {200}
        victim = worker_pids(server)[1]
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            return worker_pids(server)[1] != victim
        assert await wait_for(replaced, 15)
        assert f"worker 1 (pid {victim}) died (signal SIGKILL)" in server.output()
        results = await asyncio.gather(*(chat(server, token) for _ in range(20)))
        assert {r[0] for r in results} == {200}
        for _ in range(4):          # whichever worker answers, the dead one's requests still count
            samples = await scrape(f"{server.url}/metrics", server.admin_token)
            assert total(samples, "coder_aibridged_interceptions_total", status="success") == 40
            assert total(samples, "coder_aibridged_interceptions_inflight") == 0
    finally:
        assert server.stop() == 0


async def test_sigterm_finishes_every_workers_streams_and_loses_no_record(database: Database,
                                                                          fake: FakeUpstream) -> None:
    env = {**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": "2", "CODER_AIBRIDGE_SHUTDOWN_GRACE": "30s"}
    server = await ServerProcess(database, env=env).start()
    token = server.create_user("jade")
    expected = b"".join(chunk for chunk, _ in get_scenario("messages", "slow").replies["streaming"].chunks)
    sessions = [aiohttp.ClientSession() for _ in range(6)]     # one connection each: both workers get some
    try:
        streams = await asyncio.gather(*(start_slow_stream(s, server, token) for s in sessions))
        burst = await asyncio.gather(*(chat(server, token) for _ in range(30)))
        assert {r[0] for r in burst} == {200}
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        rests = await asyncio.wait_for(asyncio.gather(*(resp.read() for resp in streams)), 40)
        for rest in rests:                 # each stream ran to its end (its first events were read above)
            assert expected.endswith(rest) and b"message_stop" in rest
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
    finally:
        for session in sessions:
            await session.close()
    again = await ServerProcess(database, env=env).start()
    try:
        owner = Client(again.url, again.cli("tokens", "create", "admin").stdout.strip())
        status, body = await owner.get("/api/v2/aibridge/interceptions?limit=1")
        assert status == 200 and body["count"] == 36
    finally:
        again.stop()


async def test_concurrency_limit_is_per_server_not_per_worker(database: Database, fake: FakeUpstream) -> None:
    env = {**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": "2", "CODER_AIBRIDGE_MAX_CONCURRENCY": "1"}
    server = await ServerProcess(database, env=env).start()
    try:
        token = server.create_user("kim")
        async with aiohttp.ClientSession() as session:
            slow = await start_slow_stream(session, server, token)
            results = await asyncio.gather(*(chat(server, token) for _ in range(12)))   # new connections
            assert [r[0] for r in results] == [503] * 12
            assert "concurrency limit (1)" in results[0][1]["error"]["message"]
            slow.close()

        async def free() -> bool:
            return (await chat(server, token))[0] == 200
        assert await wait_for(free, 10)
    finally:
        server.stop()


async def test_rate_limit_is_per_server_without_redis(database: Database, fake: FakeUpstream) -> None:
    env = {**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": "2", "CODER_AIBRIDGE_RATE_LIMIT": "2"}
    server = await ServerProcess(database, env=env).start()
    try:
        token = server.create_user("lena")
        await asyncio.gather(*(chat(server, token) for _ in range(4)))    # warm every worker's auth cache
        await next_second()
        results = await asyncio.gather(*(chat(server, token) for _ in range(10)))
        assert sorted(r[0] for r in results) == [200] * 2 + [429] * 8
    finally:
        server.stop()


async def test_metrics_show_the_whole_server(database: Database, fake: FakeUpstream) -> None:
    """Counters, the in-flight gauge and the values read when scraped (circuits, purges), from any worker."""
    env = {**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": "2", "CODER_PROMETHEUS_ENABLE": "true",
           "CODER_PROMETHEUS_ADDRESS": "127.0.0.1:0", "CODER_AIBRIDGE_CIRCUIT_BREAKER_ENABLED": "true",
           "CODER_AIBRIDGE_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "2", "CODER_AIBRIDGE_CIRCUIT_BREAKER_TIMEOUT": "60s"}
    server = await ServerProcess(database, env=env).start()
    failing = {"x-fake-scenario": "http_error"}
    try:
        token = server.create_user("mona")
        results = await asyncio.gather(*(chat(server, token) for _ in range(25)))
        assert {r[0] for r in results} == {200}
        statuses = [(await chat(server, token, "gpt-flaky", failing))[0] for _ in range(8)]
        assert 503 in statuses, statuses          # some worker's circuit opened
        async with aiohttp.ClientSession() as session:
            slow = await start_slow_stream(session, server, token)
            started = time.monotonic()
            while time.monotonic() - started < 2:   # publishing of the watched values: once a second
                await asyncio.sleep(0.2)
            for _ in range(6):                      # fresh connections: both workers answer some
                samples = await scrape(f"{server.url}/metrics", server.admin_token)
                assert total(samples, "coder_aibridged_interceptions_total", model="gpt-4.1") == 25
                assert total(samples, "coder_aibridged_interceptions_inflight") == 1
                assert samples[("coder_aibridged_circuit_breaker_state",
                                (("endpoint", "/v1/chat/completions"), ("model", "gpt-flaky"),
                                 ("provider", "openai")))] == 1.0
                assert total(samples, "coder_aibridged_circuit_breaker_trips_total") >= 1
                assert total(samples, "coder_aibridged_circuit_breaker_rejects_total") == statuses.count(503)
                assert ("coder_aibridged_purged_interceptions_total", ()) in samples
            slow.close()
    finally:
        server.stop()


async def test_circuits_are_shared_by_the_workers(database: Database, fake: FakeUpstream) -> None:
    """Failures seen by any worker open the circuit for requests landing on every worker."""
    env = {**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": "2", "CODER_AIBRIDGE_CIRCUIT_BREAKER_ENABLED": "true",
           "CODER_AIBRIDGE_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "2", "CODER_AIBRIDGE_CIRCUIT_BREAKER_TIMEOUT": "60s"}
    server = await ServerProcess(database, env=env).start()
    failing = {"x-fake-scenario": "http_error"}
    try:
        token = server.create_user("nora")
        assert [(await chat(server, token, "gpt-flaky", failing))[0] for _ in range(2)] == [429, 429]
        sent = len(fake.requests_to("/v1/chat/completions"))
        # Fresh connections: the kernel spreads them over both workers, and every one is refused.
        statuses = [(await chat(server, token, "gpt-flaky", failing))[0] for _ in range(20)]
        assert statuses == [503] * 20
        assert len(fake.requests_to("/v1/chat/completions")) == sent
    finally:
        server.stop()
