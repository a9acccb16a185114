"""How the server holds its ports: a port already taken, backlog, header and idle timeouts, the
connection cap, and the files it leaves in its data directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Mapping

import pytest

from tests.e2e.conftest import bridge_env
from tests.fakes.upstream import FakeUpstream
from tests.harness import Database, ServerProcess, base_env, free_port

START = 60.0


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
async def test_main_port_in_use_is_refused(database: Database, workers: str) -> None:
    first = await ServerProcess(database, env={"CODER_AIBRIDGE_WORKERS": "2"}).start()
    try:
        other = Database("sqlite")
        address = f"127.0.0.1:{first.port}"
        done = start_second(other, {"CODER_HTTP_ADDRESS": address, "CODER_AIBRIDGE_WORKERS": workers})
        assert_refused(done, "--http-address", address)
        assert not (other.data_dir / "aibridge.db").exists()      # refused before anything else
    finally:
        first.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_proxy_and_metrics_ports_in_use_are_refused(database: Database, fake: FakeUpstream,
                                                          workers: str) -> None:
    proxy_port, metrics_port = free_port(), free_port()
    env = {**bridge_env(fake), "CODER_AIBRIDGE_PROXY_ENABLED": "true",
           "CODER_AIBRIDGE_PROXY_LISTEN_ADDR": f"127.0.0.1:{proxy_port}", "CODER_PROMETHEUS_ENABLE": "true",
           "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{metrics_port}", "CODER_AIBRIDGE_WORKERS": "2"}
    first = await ServerProcess(database, env=env).start()
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
