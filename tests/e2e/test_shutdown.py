"""Graceful shutdown: stop accepting, finish in-flight streams, flush every record."""

from __future__ import annotations

import asyncio
import signal

import aiohttp

from tests.e2e.conftest import bridge_env
from tests.e2e.records import latest, totals
from tests.fakes.upstream import FakeUpstream, expected_usage, get_scenario
from tests.harness import Client, Database, ServerProcess


async def test_sigterm_finishes_the_stream_in_flight_and_keeps_its_record(database: Database) -> None:
    async with FakeUpstream() as fake:
        env = {**bridge_env(fake), "CODER_AIBRIDGE_SHUTDOWN_GRACE": "30s"}
        server = await ServerProcess(database, env=env).start()
        token = server.create_user("gail")
        expected = b"".join(chunk for chunk, _ in get_scenario("messages", "slow").replies["streaming"].chunks)
        async with aiohttp.ClientSession() as session:
            resp = await session.post(f"{server.url}/api/v2/aibridge/anthropic/v1/messages",
                                      headers={"x-api-key": token},
                                      json={"model": "claude-scenario-slow", "max_tokens": 100, "stream": True,
                                            "messages": [{"role": "user", "content": "finish this"}]})
            first = await resp.content.readuntil(b"content_block_delta")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)            # mid-stream
            await asyncio.sleep(0.5)
            refused = False
            try:                                                # no new connections once stopping
                async with session.get(f"{server.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    refused = r.status != 200
            except (TimeoutError, aiohttp.ClientError):
                refused = True
            assert refused
            rest = await asyncio.wait_for(resp.read(), 30)
        assert first + rest == expected                         # the stream ran to its end
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
        assert "stopped" in server.output()

        # Everything was flushed before exit: a new process finds the finished record.
        again = await ServerProcess(database, env=env).start()
        try:
            made = again.cli("tokens", "create", "gail")
            record = await latest(Client(again.url, made.stdout.strip()), "model:claude-scenario-slow")
            assert record["metadata"].get("outcome") is None and record["ended_at"]
            assert [p["prompt"] for p in record["user_prompts"]] == ["finish this"]
            assert totals(record)["output_tokens"] == expected_usage("messages", "slow")["output_tokens"]
        finally:
            again.stop()
