"""What start-up says, once each and true (issue 20, 3.8): the schema created or migrated or
already current, a journal left behind replayed, the proxy listening — on one process or several."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aibridge.recording.journal import Journal, encode_record
from aibridge.store import records as rec
from tests.fakes.upstream import FakeUpstream
from tests.harness import Database, ServerProcess, free_port, wait_for


def leave_a_journal(database: Database, where: str) -> None:
    """A segment a stopped server left behind (its record names no known user: set aside, still replayed)."""
    iid = uuid.uuid4()
    record = rec.InterceptionStart(iid, uuid.uuid4(), "openai", "openai", "chat_completions", "m", "c", None, "",
                                   {})
    Journal(database.data_dir / "journal" / where).append(encode_record(record) + b"\n")


async def proxy_up(server: ServerProcess) -> None:
    """The workers start their proxy listeners after the supervisor says it listens: let them."""
    async def said() -> bool:
        return "AI Bridge Proxy listening" in server.output()
    assert await wait_for(said, 30), server.output()
    await asyncio.sleep(1)                       # the other worker, which must not say it again


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_start_up_says_each_thing_once(database: Database, workers: str) -> None:
    fake = FakeUpstream()
    await fake.start()
    env = {"CODER_AIBRIDGE_WORKERS": workers, "CODER_AIBRIDGE_ENABLED": "true",
           "CODER_AIBRIDGE_OPENAI_KEY": "sk-x", "CODER_AIBRIDGE_OPENAI_BASE_URL": f"{fake.url}/v1/",
           "CODER_AIBRIDGE_PROXY_ENABLED": "true", "CODER_AIBRIDGE_PROXY_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
           "CODER_AIBRIDGE_SHUTDOWN_GRACE": "2s"}
    try:
        first = await ServerProcess(database, env=env).start()
        await proxy_up(first)
        first.stop()
        out = first.output()
        assert "created the database schema" in out and "up to date" not in out, out
        assert out.count("AI Bridge Proxy listening") == 1, out

        leave_a_journal(database, "")
        leave_a_journal(database, "worker-1")          # left by an earlier run with --workers 2
        second = await ServerProcess(database, env=env).start()
        await proxy_up(second)
        second.stop()
        out = second.output()
        assert "database schema is up to date" in out and "created" not in out, out
        assert out.count("replayed the journal segment") == 2, out         # each journal, once
        assert out.count("AI Bridge Proxy listening") == 1, out
    finally:
        await fake.stop()
