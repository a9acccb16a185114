"""What the bridge shows, logs and relays never carries a credential or breaks (issue 20: 2.1, 2.4,
2.5, 2.6), end to end: a real server process, the fake upstream and the fake MCP server.

- MCP server URLs are recorded, exported, counted, traced and logged without their userinfo and
  query values; the server is still called with the whole URL.
- Malformed but valid JSON bodies (wrong types, deep nesting) and an upstream's non-JSON blocking
  answer never give a 500, with or without MCP tools in the loop.
- A prompt cannot forge a log line.
- A relayed upstream error that echoes the provider key reaches neither the client nor the log.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from tests.e2e.conftest import Bridge, bridge_env
from tests.e2e.records import ids, latest
from tests.fakes.mcp_server import McpServerProcess, free_port
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess

STREAM = [False, True]
PATHS = {"chat": "/api/v2/aibridge/openai/v1/chat/completions", "responses": "/api/v2/aibridge/openai/v1/responses",
         "messages": "/api/v2/aibridge/anthropic/v1/messages"}
MODELS = {"chat": "gpt-4.1", "responses": "gpt-5-mini", "messages": "claude-sonnet-4-5"}
CENTRAL_KEYS = ("sk-openai-central", "sk-ant-central")
MCP_PASSWORD, MCP_TOKEN = "mcp-pass-w0rd", "mcp-query-t0ken"


def masked(url: str) -> str:
    """The fake MCP server's URL as the bridge should show it (docs/mcp.md)."""
    return url + "?token=REDACTED&team=REDACTED"


def secret_url(url: str) -> str:
    return url.replace("http://", f"http://mcp-user:{MCP_PASSWORD}@") + f"?token={MCP_TOKEN}&team=core"


@dataclass
class Hygiene:
    server: ServerProcess
    fake: FakeUpstream
    mcp: McpServerProcess
    token: str
    metrics_url: str

    def owner(self) -> Client:
        return Client(self.server.url, self.server.admin_token)


@pytest.fixture(scope="module")
async def hygiene(module_database: Database) -> AsyncIterator[Hygiene]:
    mcp = McpServerProcess().start()
    fake = FakeUpstream()
    await fake.start()
    metrics_port = free_port()
    env = {**bridge_env(fake), "CODER_AIBRIDGE_MCP_SERVER_0_ID": "test",
           "CODER_AIBRIDGE_MCP_SERVER_0_URL": secret_url(mcp.url),
           "CODER_AIBRIDGE_STRUCTURED_LOGGING": "true", "CODER_PROMETHEUS_ENABLE": "true",
           "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{metrics_port}"}
    async with Database(module_database.backend) as db:        # its own: the bridge fixture has one too
        server = await ServerProcess(db, env=env).start()
        try:
            yield Hygiene(server, fake, mcp, server.create_user("alice"), f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            server.stop()
            await fake.stop()
            mcp.stop()


async def post(url: str, token: str, api: str, body: bytes,
               headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """One raw request (the SDKs would refuse to send the malformed bodies): status, type, body."""
    hdrs = {"Authorization": f"Bearer {token}", "x-api-key": token, "Content-Type": "application/json",
            **(headers or {})}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session, \
            session.post(url + PATHS[api], data=body, headers=hdrs) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


def assert_provider_error(api: str, status: int, payload: bytes, words: str) -> None:
    error = orjson.loads(payload)
    if api == "messages":
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error", error
        assert words in error["error"]["message"]
    else:
        assert words in error["error"]["message"], error
    assert status == 400


# ---------------------------------------------------------------- 2.1 MCP URL credentials


@pytest.mark.parametrize("stream", STREAM, ids=["blocking", "streaming"])
async def test_mcp_url_credentials_are_never_shown(hygiene: Hygiene, stream: bool) -> None:
    before = await ids(hygiene.owner())
    body = {"model": "gpt-4.1-scenario-injected_tool", "stream": stream,
            "messages": [{"role": "user", "content": "look up the secret"}]}
    status, _, answer = await post(hygiene.server.url, hygiene.token, "chat", orjson.dumps(body),
                                   {"x-fake-tool": "lookup_secret"})
    assert status == 200, answer
    assert stream or b"The tool ran fine" in answer
    record = await latest(Client(hygiene.server.url, hygiene.token), after=before)
    injected = [t for t in record["tool_usages"] if t["injected"]]
    assert injected and all(t["server_url"] == masked(hygiene.mcp.url) for t in injected), injected
    async with aiohttp.ClientSession() as session, session.get(hygiene.metrics_url) as resp:
        metrics = await resp.text()
    assert f'server="{masked(hygiene.mcp.url)}"' in metrics
    shown = orjson.dumps(record).decode() + metrics + hygiene.server.output()
    for secret in (MCP_PASSWORD, MCP_TOKEN, "mcp-user"):
        assert secret not in shown
    assert "HTTP Request:" not in hygiene.server.output()       # httpx's INFO lines name the whole URL


# ---------------------------------------------------------------- 2.4 malformed bodies


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def deep_body(api: str, depth: int, stream: bool) -> bytes:
    field = "input" if api == "responses" else "messages"
    prompt = '"hi"' if api == "responses" else '[{"role":"user","content":"hi"}]'
    return (f'{{"model":"{MODELS[api]}","stream":{str(stream).lower()},"max_tokens":5,'
            f'"{field}":{prompt},"metadata":{nested(depth)}}}').encode()


WRONG_TYPES: list[dict[str, Any]] = [
    {"messages": [1, 2], "stream": "yes"},
    {"input": [1, 2], "stream": "yes"},
    {"model": 1, "messages": "x", "input": {"role": "user"}, "stream": 1},
    {"model": ["m"], "messages": [{"role": "user", "content": [1, None, {"type": "text", "text": 5}]}],
     "tools": "x", "tool_choice": 7, "max_tokens": "9", "stream": True},
    {"model": {}, "messages": {"role": "user"}, "tools": [1, {"name": 2}], "stream": True,
     "stream_options": "x", "metadata": [[[]]]},
    {"model": "m", "input": [{"role": "user", "content": {"type": "input_text"}}], "previous_response_id": 5,
     "tools": {"a": 1}, "stream": True},
    {"model": "claude-haiku", "messages": [{"role": "system", "content": 1}, "x"], "system": [1],
     "thinking": "on", "anthropic_beta": [1, None], "output_config": [], "stream": False},
]


@pytest.mark.parametrize("api", list(PATHS))
async def test_malformed_bodies_never_answer_500(hygiene: Hygiene, bridge: Bridge, api: str) -> None:
    """With MCP tools in the loop (hygiene) and without (bridge)."""
    for url, token in ((hygiene.server.url, hygiene.token), (bridge.server.url, bridge.token)):
        for body in WRONG_TYPES:
            status, _, payload = await post(url, token, api, orjson.dumps(body))
            assert status < 500, (body, payload)


@pytest.mark.parametrize("api", list(PATHS))
@pytest.mark.parametrize("stream", STREAM, ids=["blocking", "streaming"])
async def test_deep_nesting_is_refused_in_the_providers_shape(hygiene: Hygiene, bridge: Bridge, api: str,
                                                              stream: bool) -> None:
    for url, token in ((hygiene.server.url, hygiene.token), (bridge.server.url, bridge.token)):
        for depth in (300, 1000):
            status, _, payload = await post(url, token, api, deep_body(api, depth, stream))
            assert_provider_error(api, status, payload, "nests deeper than")
        status, _, payload = await post(url, token, api, deep_body(api, 200, stream))
        assert status == 200, payload


@pytest.mark.parametrize("api", list(PATHS))
async def test_a_non_json_blocking_answer_is_relayed_as_it_came(hygiene: Hygiene, bridge: Bridge,
                                                                api: str) -> None:
    for url, token in ((hygiene.server.url, hygiene.token), (bridge.server.url, bridge.token)):
        body = orjson.dumps({"messages": [1, 2], "input": [1, 2], "stream": "yes"})
        status, content_type, payload = await post(url, token, api, body, {"x-fake-scenario": "not_json"})
        assert (status, content_type.split(";")[0]) == (200, "text/html"), payload
        assert payload.startswith(b"<html><body><h1>Gateway maintenance")


# ---------------------------------------------------------------- 2.5 log injection


async def test_a_prompt_cannot_forge_a_log_line(hygiene: Hygiene) -> None:
    forged = "2026-12-07 12:00:00 ERROR aibridge.server: forged by a prompt"
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": f"hello\n{forged}\r\x1b[31mred"}]}
    status, _, answer = await post(hygiene.server.url, hygiene.token, "chat", orjson.dumps(body))
    assert status == 200, answer
    await ids(hygiene.owner())          # the records (and their log lines) are out
    output = hygiene.server.output()
    assert "forged by a prompt" in output
    assert not any(line.startswith(forged) for line in output.splitlines())
    assert "\x1b" not in output and "\r" not in output
    assert re.search(r"prompt=hello\\n2026-12-07 12:00:00 ERROR aibridge.server: forged by a prompt\\r\\x1b\[31mred",
                     output), output[-2000:]


# ---------------------------------------------------------------- 2.6 provider keys in relayed errors


@pytest.mark.parametrize("api", list(PATHS))
@pytest.mark.parametrize("stream", STREAM, ids=["blocking", "streaming"])
async def test_relayed_errors_never_echo_the_provider_key(bridge: Bridge, api: str, stream: bool) -> None:
    body = {"model": f"{MODELS[api]}-scenario-key_echo", "stream": stream, "max_tokens": 5, "input": "hi",
            "messages": [{"role": "user", "content": "hi"}]}
    status, _, payload = await post(bridge.server.url, bridge.token, api, orjson.dumps(body))
    assert status == 401, payload
    assert b"[REDACTED:provider_key]" in payload
    error = orjson.loads(payload)["error"]
    assert "Incorrect API key provided" in error["message"] or "invalid x-api-key" in error["message"]
    shown = payload.decode() + bridge.server.output()
    for key in CENTRAL_KEYS:
        assert key not in shown
