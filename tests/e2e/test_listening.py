"""How the server holds its ports: a port already taken, backlog, header and idle timeouts, the
connection cap, and the files it leaves in its data directory."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.e2e.conftest import bridge_env
from tests.fakes.upstream import FakeUpstream, get_scenario
from tests.harness import Database, ServerProcess, base_env, free_port, wait_for

START = 60.0


@pytest.fixture
async def sqlite() -> AsyncIterator[Database]:
    """For what does not depend on the database (ports, connections): SQLite only."""
    async with Database("sqlite") as db:
        yield db


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


def start_second(db: Database, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``aibridge server`` that is expected to refuse to start (bounded: it must not keep running)."""
    full = {**db.env(), "CODER_AIBRIDGE_WORKERS": "1", **env}
    try:
        return subprocess.run([sys.executable, "-m", "aibridge", "server"], env=base_env(full), capture_output=True,
                              text=True, timeout=START, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the second server started instead of refusing:\n{exc.stdout!r}\n{exc.stderr!r}") \
            from None


def assert_refused(done: subprocess.CompletedProcess[str], option: str, address: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == f"error: {option}: cannot listen on {address}: another process already listens there", \
        done.stderr
    assert not any(line.startswith("error:") for line in lines[:-1]), done.stderr
    assert "shown this once" not in done.stdout + done.stderr         # no owner, no token printed


# ---------------------------------------------------------------- a port already in use (3.1)

@pytest.mark.parametrize("workers", ["1", "2"])
async def test_main_port_in_use_is_refused(sqlite: Database, workers: str) -> None:
    first = await ServerProcess(sqlite, env={"CODER_AIBRIDGE_WORKERS": "2"}).start()
    try:
        other = Database("sqlite")
        address = f"127.0.0.1:{first.port}"
        done = start_second(other, {"CODER_HTTP_ADDRESS": address, "CODER_AIBRIDGE_WORKERS": workers})
        assert_refused(done, "--http-address", address)
        assert not (other.data_dir / "aibridge.db").exists()      # refused before anything else
    finally:
        first.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_proxy_and_metrics_ports_in_use_are_refused(sqlite: Database, fake: FakeUpstream,
                                                          workers: str) -> None:
    proxy_port, metrics_port = free_port(), free_port()
    env = {**bridge_env(fake), "CODER_AIBRIDGE_PROXY_ENABLED": "true",
           "CODER_AIBRIDGE_PROXY_LISTEN_ADDR": f"127.0.0.1:{proxy_port}", "CODER_PROMETHEUS_ENABLE": "true",
           "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{metrics_port}", "CODER_AIBRIDGE_WORKERS": "2"}
    first = await ServerProcess(sqlite, env=env).start()
    try:
        other = Database("sqlite")
        second = {**env, "CODER_HTTP_ADDRESS": f"127.0.0.1:{free_port()}", "CODER_AIBRIDGE_WORKERS": workers}
        done = start_second(other, second)
        assert_refused(done, "--aibridge-proxy-listen-addr", f"127.0.0.1:{proxy_port}")
        second["CODER_AIBRIDGE_PROXY_LISTEN_ADDR"] = f"127.0.0.1:{free_port()}"
        done = start_second(other, second)
        assert_refused(done, "--prometheus-address", f"127.0.0.1:{metrics_port}")
    finally:
        first.stop()


# ---------------------------------------------------------------- header and idle timeouts, connection cap (2.3)

SLOW = {"model": "claude-scenario-slow", "max_tokens": 10, "messages": [{"role": "user", "content": "slowly"}]}
SHORT = {"CODER_AIBRIDGE_HEADER_TIMEOUT": "1s", "CODER_AIBRIDGE_IDLE_TIMEOUT": "2s"}
BOUND = 20.0        # far above every timeout under test, far below aiohttp's own (3630 s)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closes the connection (bounded)."""
    try:
        async with asyncio.timeout(BOUND):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def test_headers_trickling_in_are_cut(sqlite: Database) -> None:
    server = await ServerProcess(sqlite, env=SHORT).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:
            for i in range(int(BOUND / 0.3)):
                await asyncio.sleep(0.3)
                writer.write(f"X-Slow-{i}: x\r\n".encode())
        task = asyncio.create_task(trickle())
        try:
            assert await closed_by_server(reader)
        finally:
            task.cancel()
            writer.close()
        silent = await asyncio.open_connection("127.0.0.1", server.port)       # a connection that says nothing
        assert await closed_by_server(silent[0])
        silent[1].close()
    finally:
        server.stop()


async def test_idle_keepalive_connection_is_closed(sqlite: Database) -> None:
    server = await ServerProcess(sqlite, env=SHORT).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200") and b"close" not in head.lower()
        assert await closed_by_server(reader)
        writer.close()
    finally:
        server.stop()


async def test_long_streams_and_slow_answers_outlive_every_timeout(sqlite: Database, fake: FakeUpstream) -> None:
    """A 10 s SSE stream and a blocking answer that takes 10 s, with 1 s / 2 s timeouts."""
    server = await ServerProcess(sqlite, env={**bridge_env(fake), **SHORT}).start()
    try:
        token = server.create_user("lena")
        expected = b"".join(chunk for chunk, _ in get_scenario("messages", "slow").replies["streaming"].chunks)
        url = f"{server.url}/api/v2/aibridge/anthropic/v1/messages"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            async def stream() -> bytes:
                async with session.post(url, headers={"x-api-key": token}, json={**SLOW, "stream": True}) as resp:
                    assert resp.status == 200
                    return await resp.read()

            async def blocking() -> int:
                async with session.post(url, headers={"x-api-key": token}, json=SLOW) as resp:
                    await resp.read()
                    return resp.status
            body, status = await asyncio.gather(stream(), blocking())
        assert body == expected
        assert status == 200
    finally:
        server.stop()


async def test_connection_cap_refuses_clearly(sqlite: Database) -> None:
    server = await ServerProcess(sqlite, env={"CODER_AIBRIDGE_MAX_CONNECTIONS": "3"}).start()
    held = []
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            held.append((reader, writer))
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer
        assert orjson.loads(body)["message"] == "too many connections"
        assert b"retry-after" in head.lower()
        held.pop()[1].close()
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as resp:
            assert resp.status == 200          # a freed slot is used again
        assert "refused a connection: 3 connections are open" in server.output()
    finally:
        for _, writer in held:
            writer.close()
        server.stop()


# ---------------------------------------------------------------- listen backlog (3.9)

def listen_backlogs(port: int) -> list[int]:
    """Send-Q of every listening socket on ``port`` as the kernel reports it (its backlog)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[2]) for line in out.splitlines() if line.strip()]


def somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_listen_backlog_is_the_option(sqlite: Database, fake: FakeUpstream, workers: str) -> None:
    proxy_port = free_port()
    env = {**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": workers, "CODER_AIBRIDGE_LISTEN_BACKLOG": "1500",
           "CODER_AIBRIDGE_PROXY_ENABLED": "true", "CODER_AIBRIDGE_PROXY_LISTEN_ADDR": f"127.0.0.1:{proxy_port}"}
    server = await ServerProcess(sqlite, env=env).start()
    try:
        want = min(1500, somaxconn())
        assert listen_backlogs(server.port) == [want] * int(workers)
        assert await wait_for_backlogs(proxy_port, [want] * int(workers))
    finally:
        server.stop()
    server = await ServerProcess(sqlite, env={"CODER_AIBRIDGE_WORKERS": workers}).start()
    try:
        assert listen_backlogs(server.port) == [min(65535, somaxconn())] * int(workers)     # default: high, capped
    finally:
        server.stop()


async def wait_for_backlogs(port: int, want: list[int]) -> bool:
    async def check() -> bool:
        return listen_backlogs(port) == want
    return bool(await wait_for(check, 10))


# ---------------------------------------------------------------- file modes of the data directory (2.7)

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_dir_is_private(database: Database) -> None:
    """A new data directory is 0700 and the SQLite files in it 0600 (umask 022, as on most hosts)."""
    data_dir = database.data_dir / "fresh" / "aibridge"
    server = await ServerProcess(database, env={"CODER_AIBRIDGE_DATA_DIR": str(data_dir)}).start()
    try:
        server.create_user("mira")          # writes: the WAL exists
        assert mode(data_dir) == 0o700
        if database.backend == "sqlite":
            for name in ("aibridge.db", "aibridge.db-wal", "aibridge.db-shm"):
                assert mode(data_dir / name) == 0o600, name
    finally:
        server.stop()


async def test_existing_loose_data_dir_is_tightened(database: Database) -> None:
    data_dir = database.data_dir / "old"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    if database.backend == "sqlite":
        made = subprocess.run([sys.executable, "-m", "aibridge", "migrate"], capture_output=True, text=True,
                              env=base_env({"CODER_AIBRIDGE_DATA_DIR": str(data_dir)}), timeout=60, check=False)
        assert made.returncode == 0, made.stderr
        (data_dir / "aibridge.db").chmod(0o644)
        data_dir.chmod(0o755)
    server = await ServerProcess(database, env={"CODER_AIBRIDGE_DATA_DIR": str(data_dir)}).start()
    try:
        server.create_user("omar")
        assert mode(data_dir) == 0o700
        assert f"restricted {data_dir} from 0755 to 0700" in server.output()
        if database.backend == "sqlite":
            assert f"restricted {data_dir / 'aibridge.db'} from 0644 to 0600" in server.output()
            assert all(mode(path) == 0o600 for path in data_dir.glob("aibridge.db*"))
    finally:
        server.stop()
