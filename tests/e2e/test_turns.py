"""One turn loop (issue 20, items 1.3 and 1.4): real server processes, a real MCP server, the fake
upstream; SQLite and PostgreSQL.

1.3: with MCP tools injected, a streamed answer's closing event reaches the client only once the
interception has ended (journaled): a kill -9 the moment the client sees it loses nothing.
1.4: a Responses conversation whose answer was joined from several upstream calls continues
from the last of them whichever worker or replica serves the next request.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.e2e.conftest import bridge_env
from tests.e2e.faults import wait_exported
from tests.e2e.test_mcp import FIRST_RESPONSE_ID, LAST_RESPONSE_ID, model
from tests.fakes.mcp_server import McpServerProcess
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess

# The closing event of each API's joined stream (the joiner holds it until the last turn ended).
CLOSING = {"messages": b"message_stop", "chat": b"data: [DONE]", "responses": b"response.completed"}
PATHS = {"messages": "anthropic/v1/messages", "chat": "openai/v1/chat/completions",
         "responses": "openai/v1/responses"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def mcp() -> Any:
    server = McpServerProcess().start()
    yield server
    server.stop()


def mcp_env(fake: FakeUpstream, mcp: McpServerProcess, **extra: str) -> dict[str, str]:
    return {**bridge_env(fake), "CODER_AIBRIDGE_MCP_SERVER_0_ID": "test", "CODER_AIBRIDGE_MCP_SERVER_0_URL": mcp.url,
            "CODER_AIBRIDGE_MCP_SERVER_0_AUTHORIZATION": "Bearer mcp-central-secret", **extra}


def injected_body(api: str, prompt: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model(api, "injected_tool"), "stream": True}
    if api == "responses":
        return {**body, "input": prompt}
    if api == "messages":
        body["max_tokens"] = 100
    return {**body, "messages": [{"role": "user", "content": prompt}]}


def read_then_kill(server: ServerProcess, token: str, api: str, prompt: str) -> bytes:
    """A blocking socket client: send one streamed request and kill -9 the server the moment the
    stream's closing event arrives (before reading on to the end). What it read."""
    assert server.proc is not None
    body = orjson.dumps(injected_body(api, prompt))
    head = (f"POST /api/v2/aibridge/{PATHS[api]} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nx-api-key: {token}\r\nx-fake-tool: lookup_secret\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(head + body)
        deadline = time.monotonic() + 30
        while CLOSING[api] not in received and time.monotonic() < deadline:
            data = conn.recv(65536)
            if not data:
                break
            received += data
        os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    return received


@pytest.mark.parametrize("api", ["messages", "chat", "responses"])
async def test_an_injected_stream_ends_its_interception_before_its_closing_event(
        database: Database, fake: FakeUpstream, mcp: McpServerProcess, api: str) -> None:
    """Before: the joined stream wrote its closing event and end first and ended the interception
    after, so a kill -9 right after the client had its answer left it open ("interrupted")."""
    server = await ServerProcess(database, env=mcp_env(fake, mcp)).start()
    token, owner = server.create_user("tess"), server.admin_token
    prompt = f"killed at the closing event {api}"
    received = await asyncio.to_thread(read_then_kill, server, token, api, prompt)
    assert b" 200 OK" in received.split(b"\r\n", 1)[0] and CLOSING[api] in received, received[-400:]
    again = await ServerProcess(database, env=mcp_env(fake, mcp)).start()
    try:
        record = (await wait_exported(Client(again.url, owner), {prompt}))[prompt]
        assert record["ended_at"] and record["metadata"].get("outcome") is None, record["metadata"]
        assert [t["tool"] for t in record["tool_usages"] if t["injected"]] == ["lookup_secret"]
    finally:
        again.stop()


# ---------------------------------------------------------------- 1.4: the response-id table

async def joined_stream(url: str, token: str) -> str:
    """A streamed Responses answer joined from two upstream calls; the id the client was shown."""
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/api/v2/aibridge/openai/v1/responses", headers={"Authorization": f"Bearer {token}",
                                                                   "x-fake-tool": "lookup_secret"},
            json=injected_body("responses", "What is the secret?")) as resp:
        assert resp.status == 200
        raw = await resp.read()
    assert b"response.completed" in raw and FIRST_RESPONSE_ID.encode() in raw
    return FIRST_RESPONSE_ID


async def continue_from(url: str, token: str, previous: str) -> None:
    """A follow-up on a fresh connection (with several workers, any of them may take it)."""
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/api/v2/aibridge/openai/v1/responses", headers={"Authorization": f"Bearer {token}"},
            json={"model": model("responses", "simple"), "stream": True, "input": "and then?",
                  "previous_response_id": previous}) as resp:
        assert resp.status == 200
        await resp.read()


def continued_ids(fake: FakeUpstream, since: int) -> list[str]:
    return [r.json.get("previous_response_id") for r in fake.requests[since:]
            if r.api == "responses" and "and then?" in orjson.dumps(r.json).decode()]


async def test_a_joined_response_continues_on_every_worker(database: Database, fake: FakeUpstream,
                                                          mcp: McpServerProcess) -> None:
    """Before: the table was one process's memory, so about half the follow-ups (those another
    worker took) continued from the first upstream response, which lacks the tool's result."""
    server = await ServerProcess(database, env=mcp_env(fake, mcp, CODER_AIBRIDGE_WORKERS="2")).start()
    try:
        token = server.create_user("wanda")
        shown = await joined_stream(server.url, token)
        since = len(fake.requests)
        for _ in range(8):          # fresh connections: the kernel spreads them over both workers
            await continue_from(server.url, token, shown)
        assert continued_ids(fake, since) == [LAST_RESPONSE_ID] * 8
        # an id the bridge did not join goes upstream as it is
        since = len(fake.requests)
        await continue_from(server.url, token, "resp_not_joined")
        assert continued_ids(fake, since) == ["resp_not_joined"]
    finally:
        server.stop()


async def test_a_joined_response_continues_on_another_replica(fake: FakeUpstream, mcp: McpServerProcess) -> None:
    async with Database("postgres") as db:
        first = await ServerProcess(db, env=mcp_env(fake, mcp)).start()
        second = await ServerProcess(db, env=mcp_env(fake, mcp, CODER_AIBRIDGE_DATA_DIR=tempfile.mkdtemp(
            prefix="aibridge-replica-"))).start()
        try:
            token = first.create_user("rhea")
            shown = await joined_stream(first.url, token)
            since = len(fake.requests)
            await continue_from(second.url, token, shown)
            assert continued_ids(fake, since) == [LAST_RESPONSE_ID]
        finally:
            second.stop()
            first.stop()
