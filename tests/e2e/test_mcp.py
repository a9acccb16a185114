"""MCP tools injection end to end: official SDKs → bridge process → fake upstream, tools run on a
real MCP server (the official SDK's server over streamable HTTP), records checked in the export."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.e2e.clients import INSTALL_TIMEOUT, client_env, npm_clients
from tests.e2e.conftest import bridge_env
from tests.e2e.records import ids, latest, settled
from tests.e2e.test_web import ROWS, Page, devtools, page, rows_loaded, sign_in  # noqa: F401 (fixtures)
from tests.fakes.mcp_server import McpServerProcess, free_port
from tests.fakes.upstream import FakeUpstream, expected_usage
from tests.harness import Client, Database, ServerProcess, wait_for

STREAM = [False, True]
TOOL = "bmcp_test_lookup_secret"
OFFERED = ["bmcp_test_fail", "bmcp_test_lookup_secret", "bmcp_test_slow"]       # add is denied
SECRET = "the secret of fake is AZURE-28"          # lookup_secret(key="fake"): the fake model's sample input
FINAL_TEXT = "The tool ran fine and returned its result."
MAX_ITERATIONS = 2
FIRST_RESPONSE_ID = "resp_0ebf5c169dbcef0200692a7b0aceecc19afd0b1c25d6e7f8a9"   # the fake's injected_tool ids
LAST_RESPONSE_ID = "resp_0ebf5c169dbcef0200692a7b1a1b2c3d4e5f6a7b8c9d0e1f2a"
API_DIR = {"messages": "messages", "chat": "chat", "responses": "responses"}


@dataclass
class McpBridge:
    server: ServerProcess
    fake: FakeUpstream
    mcp: McpServerProcess
    token: str

    def owner(self) -> Client:
        return Client(self.server.url, self.server.admin_token)

    def anthropic(self, tool: str = "lookup_secret") -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=f"{self.server.url}/api/v2/aibridge/anthropic", api_key=self.token,
                                        max_retries=0, timeout=30, default_headers={"x-fake-tool": tool})

    def openai(self, tool: str = "lookup_secret") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.server.url}/api/v2/aibridge/openai/v1", api_key=self.token,
                                  max_retries=0, timeout=30, default_headers={"x-fake-tool": tool})


@pytest.fixture(scope="module")
async def mcp_bridge(module_database: Database) -> AsyncIterator[McpBridge]:
    mcp = McpServerProcess().start()
    fake = FakeUpstream()
    await fake.start()
    env = {**bridge_env(fake), "CODER_AIBRIDGE_MCP_SERVER_0_ID": "test",
           "CODER_AIBRIDGE_MCP_SERVER_0_URL": mcp.url,
           "CODER_AIBRIDGE_MCP_SERVER_0_AUTHORIZATION": "Bearer mcp-central-secret",
           "CODER_AIBRIDGE_MCP_SERVER_0_TOOL_DENY_REGEX": "^add$",
           "CODER_AIBRIDGE_MCP_MAX_ITERATIONS": str(MAX_ITERATIONS),
           "CODER_AIBRIDGE_SEND_ACTOR_HEADERS": "true", "CODER_PROMETHEUS_ENABLE": "true",
           "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{free_port()}"}
    server = await ServerProcess(module_database, env=env).start()
    try:
        yield McpBridge(server, fake, mcp, server.create_user("alice"))
    finally:
        server.stop()
        await fake.stop()
        mcp.stop()


def model(api: str, scenario: str) -> str:
    prefix = {"messages": "claude-sonnet-4-5", "chat": "gpt-4.1", "responses": "gpt-5-mini"}[api]
    return f"{prefix}-scenario-{scenario}"


async def ask(bridge: McpBridge, api: str, scenario: str, stream: bool, tool: str = "lookup_secret",
              client_tools: bool = False) -> tuple[str, list[str]]:
    """One request through the official SDK: the answer's text and the tool calls the client saw."""
    if api == "messages":
        return await _ask_messages(bridge.anthropic(tool), scenario, stream, client_tools)
    if api == "chat":
        return await _ask_chat(bridge.openai(tool), scenario, stream, client_tools)
    return await _ask_responses(bridge.openai(tool), scenario, stream, client_tools)


WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


async def _ask_messages(client: anthropic.AsyncAnthropic, scenario: str, stream: bool,
                        client_tools: bool) -> tuple[str, list[str]]:
    kwargs: Any = {"model": model("messages", scenario), "max_tokens": 200,
                   "messages": [{"role": "user", "content": "What is the secret?"}]}
    if client_tools:
        kwargs["tools"] = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}]
    if stream:
        async with client.messages.stream(**kwargs) as events:
            message = await events.get_final_message()
    else:
        message = await client.messages.create(**kwargs)
    text = "".join(b.text for b in message.content if b.type == "text")
    return text, [b.name for b in message.content if b.type == "tool_use"]


async def _ask_chat(client: openai.AsyncOpenAI, scenario: str, stream: bool,
                    client_tools: bool) -> tuple[str, list[str]]:
    kwargs: Any = {"model": model("chat", scenario), "messages": [{"role": "user", "content": "What is the secret?"}]}
    if client_tools:
        kwargs["tools"] = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]
    if stream:
        async with client.chat.completions.stream(**kwargs) as events:
            done = await events.get_final_completion()
    else:
        done = await client.chat.completions.create(**kwargs)
    message = done.choices[0].message
    return message.content or "", [c.function.name for c in message.tool_calls or []]


async def _ask_responses(client: openai.AsyncOpenAI, scenario: str, stream: bool,
                         client_tools: bool) -> tuple[str, list[str]]:
    kwargs: Any = {"model": model("responses", scenario), "input": "What is the secret?"}
    if client_tools:
        kwargs["tools"] = [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA, "strict": False}]
    if stream:
        async with client.responses.stream(**kwargs) as events:
            response = await events.get_final_response()
    else:
        response = await client.responses.create(**kwargs)
    return response.output_text, [i.name for i in response.output if i.type == "function_call"]


def upstream_calls(bridge: McpBridge, since: int) -> list[Any]:
    return [r for r in bridge.fake.requests[since:] if r.api in API_DIR.values()]


def tool_names(api: str, body: dict[str, Any]) -> list[str]:
    # built-in tools (Codex's web_search) have only a type
    return [t.get("name") or t.get("function", {}).get("name") or t["type"] for t in body.get("tools", [])]


def last_tool_result(api: str, body: dict[str, Any]) -> tuple[str, bool]:
    if api == "messages":
        (result,) = body["messages"][-1]["content"]
        return result["content"], result.get("is_error", False)
    if api == "chat":
        return body["messages"][-1]["content"], False
    return body["input"][-1]["output"], False


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("api", ["messages", "chat", "responses"])
async def test_injected_tool_runs_inside_one_answer(mcp_bridge: McpBridge, api: str, stream: bool) -> None:
    owner = mcp_bridge.owner()
    before, sent_before = await ids(owner), len(mcp_bridge.fake.requests)
    calls_before = mcp_bridge.mcp.stats()["tools_call"]
    text, client_calls = await ask(mcp_bridge, api, "injected_echo", stream)
    assert text.endswith(f"returned {SECRET}") and client_calls == []    # the model saw what the tool said
    assert mcp_bridge.mcp.stats()["tools_call"] == calls_before + 1

    first, second = upstream_calls(mcp_bridge, sent_before)
    assert tool_names(api, first.json) == OFFERED          # sorted, the denied one left out
    assert second.json["tools"] == first.json["tools"]      # byte-stable for prompt caching
    assert last_tool_result(api, second.json) == (SECRET, False)
    if api == "messages":
        assert first.json["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    else:
        assert first.json["parallel_tool_calls"] is False

    record = await latest(owner, after=before)
    (tool,) = record["tool_usages"]
    found = (tool["tool"], tool["injected"], tool["server_url"], json.loads(tool["input"]), tool["invocation_error"])
    assert found == ("lookup_secret", True, mcp_bridge.mcp.url, {"key": "fake"}, None)
    assert tool["metadata"]["result_size"] == len(SECRET)
    assert [p["prompt"] for p in record["user_prompts"]] == ["What is the secret?"]
    usages = sorted((u["input_tokens"], u["output_tokens"]) for u in record["token_usages"])
    dir_ = API_DIR[api]
    expected = sorted((u["input_tokens"], u["output_tokens"]) for u in (
        expected_usage(dir_, "injected_echo", streaming=stream),
        expected_usage(dir_, "injected_echo", streaming=stream, followup=True)))
    assert usages == expected


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("api", ["messages", "chat", "responses"])
async def test_a_failing_tool_goes_back_as_an_error_result(mcp_bridge: McpBridge, api: str, stream: bool) -> None:
    owner = mcp_bridge.owner()
    before, sent_before = await ids(owner), len(mcp_bridge.fake.requests)
    text, _ = await ask(mcp_bridge, api, "injected_tool", stream, tool="fail")
    assert text.endswith(FINAL_TEXT)
    _, second = upstream_calls(mcp_bridge, sent_before)
    result, is_error = last_tool_result(api, second.json)
    assert "Error executing tool fail" in result
    if api == "messages":
        assert is_error
    (tool,) = (await latest(owner, after=before))["tool_usages"]
    assert tool["tool"] == "fail" and tool["injected"] is True
    assert tool["invocation_error"] and "Error executing tool fail" in tool["invocation_error"]


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("api", ["messages", "chat", "responses"])
async def test_iteration_limit_ends_the_answer_with_an_error(mcp_bridge: McpBridge, api: str, stream: bool) -> None:
    owner = mcp_bridge.owner()
    before, sent_before = await ids(owner), len(mcp_bridge.fake.requests)
    if api == "responses" and stream:          # the SDK ends such a stream without raising: read the event
        events = await raw_stream(mcp_bridge, "openai/v1/responses", {
            "model": model(api, "injected_loop"), "stream": True, "input": "What is the secret?"})
        name, failed = events[-1]
        assert name == "response.failed" and isinstance(failed, dict)
        assert failed["response"]["id"] == events[0][1]["response"]["id"]        # type: ignore[index]
        assert "stopped after 2 rounds of tool calls" in failed["response"]["error"]["message"]
    else:
        with pytest.raises((anthropic.APIError, openai.APIError)) as caught:
            await ask(mcp_bridge, api, "injected_loop", stream)
        assert "stopped after 2 rounds of tool calls" in str(caught.value)
        if not stream:
            assert getattr(caught.value, "status_code", None) == 500
    assert len(upstream_calls(mcp_bridge, sent_before)) == MAX_ITERATIONS + 1
    record = await latest(owner, after=before)
    assert len(record["tool_usages"]) == MAX_ITERATIONS and len(record["token_usages"]) == MAX_ITERATIONS + 1
    assert "stopped after 2 rounds" in record["metadata"]["error"]


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("api", ["messages", "chat", "responses"])
async def test_client_tool_and_injected_tool_in_one_turn(mcp_bridge: McpBridge, api: str, stream: bool) -> None:
    owner = mcp_bridge.owner()
    before, sent_before = await ids(owner), len(mcp_bridge.fake.requests)
    calls_before = mcp_bridge.mcp.stats()["tools_call"]
    _, client_calls = await ask(mcp_bridge, api, "mixed_tools", stream, client_tools=True)
    assert client_calls == ["get_weather"]                       # the client's call is the client's
    assert len(upstream_calls(mcp_bridge, sent_before)) == 1     # and the loop stops for it
    assert mcp_bridge.mcp.stats()["tools_call"] == calls_before + 1
    first = upstream_calls(mcp_bridge, sent_before)[0]
    names = tool_names(api, first.json)
    assert names == ([*OFFERED, "get_weather"] if api == "messages" else ["get_weather", *OFFERED])
    record = await latest(owner, after=before)
    found = sorted((t["tool"], t["injected"], t["server_url"]) for t in record["tool_usages"])
    assert found == [("get_weather", False, None), ("lookup_secret", True, mcp_bridge.mcp.url)]


async def test_mcp_server_sees_the_central_authorization_and_the_actor(mcp_bridge: McpBridge) -> None:
    await ask(mcp_bridge, "messages", "injected_tool", False)
    headers = mcp_bridge.mcp.stats()["headers"]
    assert headers and all(h.get("authorization") == "Bearer mcp-central-secret" for h in headers)
    calls = [h for h in headers if h.get("mcp-method") == "tools/call"]
    assert calls and all(h.get("x-ai-bridge-actor-metadata-username") == "alice" for h in calls)
    assert all(mcp_bridge.token not in json.dumps(h) for h in headers)


async def test_client_disconnect_stops_the_loop_at_once(mcp_bridge: McpBridge) -> None:
    """The model calls a tool that would take a minute; the client leaves: the tool call is abandoned."""
    owner = mcp_bridge.owner()
    before, sent_before = await ids(owner), len(mcp_bridge.fake.requests)
    slow_before = mcp_bridge.mcp.stats()["slow_started"]
    headers = {"Authorization": f"Bearer {mcp_bridge.token}", "x-fake-tool": "slow"}
    body = {"model": model("messages", "injected_tool"), "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "Take your time."}]}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{mcp_bridge.server.url}/api/v2/aibridge/anthropic/v1/messages", json=body,
                                  headers=headers)
        seen = b""
        while b"content_block_stop" not in seen:             # turn 1's text has arrived, live
            seen += await asyncio.wait_for(resp.content.readany(), 10)
        for _ in range(400):                                  # bounded wait: the tool is running now
            if mcp_bridge.mcp.stats()["slow_started"] > slow_before:
                break
            await asyncio.sleep(0.05)
        assert mcp_bridge.mcp.stats()["slow_started"] == slow_before + 1
        resp.close()                                          # the client goes away

    async def this_one() -> dict[str, Any] | None:         # not an earlier test's late-written record
        status, body = await owner.get("/api/v2/aibridge/interceptions?limit=20")
        assert status == 200, body
        return next((r for r in body["results"] if r["id"] not in before
                     and any(p["prompt"] == "Take your time." for p in r["user_prompts"])), None)

    record = await wait_for(this_one, 15)
    assert record is not None, "the abandoned interception was not recorded"
    started = datetime.fromisoformat(record["started_at"])
    ended = datetime.fromisoformat(record["ended_at"])
    assert (ended - started).total_seconds() < 30             # not the tool's minute
    assert record["metadata"].get("outcome") == "canceled", record
    assert len(upstream_calls(mcp_bridge, sent_before)) == 1  # no second upstream call
    assert mcp_bridge.mcp.stats()["slow_finished"] == 0
    (tool,) = record["tool_usages"]
    assert tool["tool"] == "slow" and tool["injected"] is True
    assert tool["invocation_error"] == "canceled: the client disconnected"


async def raw_stream(bridge: McpBridge, path: str, body: dict[str, Any], tool: str = "lookup_secret") -> list[
        tuple[str | None, dict[str, Any] | str]]:
    """The client's bytes, decoded event by event."""
    headers = {"Authorization": f"Bearer {bridge.token}", "x-fake-tool": tool}
    async with aiohttp.ClientSession() as session, \
            session.post(f"{bridge.server.url}/api/v2/aibridge/{path}", json=body, headers=headers) as resp:
        assert resp.status == 200
        raw = (await resp.read()).decode()
    events: list[tuple[str | None, dict[str, Any] | str]] = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = lines["data"]
        events.append((lines.get("event"), data if data == "[DONE]" else json.loads(data)))
    return events


async def test_anthropic_stream_bytes(mcp_bridge: McpBridge) -> None:
    events = await raw_stream(mcp_bridge, "anthropic/v1/messages", {
        "model": model("messages", "injected_tool"), "max_tokens": 100, "stream": True,
        "messages": [{"role": "user", "content": "What is the secret?"}]})
    shape = [(name, data.get("index")) for name, data in events if isinstance(data, dict)]
    assert shape == [("message_start", None), ("content_block_start", 0), ("ping", None),
                     ("content_block_delta", 0), ("content_block_delta", 0), ("content_block_stop", 0),
                     ("content_block_start", 1), ("ping", None)] + [("content_block_delta", 1)] * 4 + [
                     ("content_block_stop", 1), ("message_delta", None), ("message_stop", None)]
    first, followup = (expected_usage("messages", "injected_tool", streaming=True, followup=f) for f in (False, True))
    delta = events[-2][1]
    assert isinstance(delta, dict)
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["input_tokens"] == first["input_tokens"] + followup["input_tokens"]
    assert delta["usage"]["output_tokens"] == first["output_tokens"] + followup["output_tokens"]


async def test_chat_stream_bytes(mcp_bridge: McpBridge) -> None:
    events = await raw_stream(mcp_bridge, "openai/v1/chat/completions", {
        "model": model("chat", "injected_tool"), "stream": True,
        "messages": [{"role": "user", "content": "What is the secret?"}]})
    assert events[-1] == (None, "[DONE]")
    chunks = [data for _, data in events[:-1] if isinstance(data, dict)]
    assert len({c["id"] for c in chunks}) == 1
    assert not any("tool_calls" in ch["delta"] for c in chunks for ch in c["choices"])
    assert [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]] == ["stop"]
    assert "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"]) == FINAL_TEXT
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (230 + 297, 21 + 14)


async def test_responses_stream_bytes(mcp_bridge: McpBridge) -> None:
    events = await raw_stream(mcp_bridge, "openai/v1/responses", {
        "model": model("responses", "injected_tool"), "stream": True, "input": "What is the secret?"})
    data = [d for _, d in events if isinstance(d, dict)]
    kinds = [d["type"] for d in data]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added"] + ["response.output_text.delta"] * 4 + [
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert {d["output_index"] for d in data if "output_index" in d} == {0}
    final = data[-1]["response"]
    assert final["id"] == data[0]["response"]["id"] == FIRST_RESPONSE_ID       # one id for the whole answer
    assert (final["usage"]["input_tokens"], final["usage"]["output_tokens"]) == (240 + 301, 22 + 13)
    # continuing from that id continues from the last upstream response (which holds the tool result)
    sent = len(mcp_bridge.fake.requests)
    await raw_stream(mcp_bridge, "openai/v1/responses", {
        "model": model("responses", "simple"), "stream": True, "input": "and then?",
        "previous_response_id": FIRST_RESPONSE_ID})
    (next_call,) = upstream_calls(mcp_bridge, sent)
    assert next_call.json["previous_response_id"] == LAST_RESPONSE_ID


async def test_injected_calls_are_counted(mcp_bridge: McpBridge) -> None:
    await ask(mcp_bridge, "chat", "injected_tool", False)
    status, text = await mcp_bridge.owner().get("/metrics")
    assert status == 200
    wanted = ('coder_aibridged_injected_tool_invocations_total{model="gpt-4.1-scenario-injected_tool",'
              f'name="lookup_secret",provider="openai",server="{mcp_bridge.mcp.url}"}} ')
    assert any(line.startswith(wanted) and float(line.split()[-1]) >= 1 for line in text.splitlines())
    assert not any(line.startswith("coder_aibridged_non_injected_tool_selections_total{") and "lookup_secret" in line
                   for line in text.splitlines())


# ---------------------------------------------------------------- a server down at start, then tools caching

@pytest.fixture(scope="module")
async def late_bridge(module_database: Database) -> AsyncIterator[tuple[ServerProcess, FakeUpstream, McpServerProcess,
                                                                       str]]:
    mcp = McpServerProcess()                  # its port is chosen, nothing listens there yet
    fake = FakeUpstream()
    await fake.start()
    env = {**bridge_env(fake), "CODER_AIBRIDGE_MCP_SERVER_0_ID": "late", "CODER_AIBRIDGE_MCP_SERVER_0_URL": mcp.url,
           "CODER_AIBRIDGE_MCP_REFRESH_INTERVAL": "3s", "CODER_AIBRIDGE_MCP_TIMEOUT": "5s",
           "CODER_PROMETHEUS_ENABLE": "true", "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{free_port()}"}
    server = await ServerProcess(module_database, env=env).start()
    try:
        yield server, fake, mcp, server.create_user("carol")
    finally:
        server.stop()
        await fake.stop()
        mcp.stop()


async def test_server_down_at_start_comes_up_later_and_lists_are_cached(
        late_bridge: tuple[ServerProcess, FakeUpstream, McpServerProcess, str]) -> None:
    server, fake, mcp, token = late_bridge
    client = openai.AsyncOpenAI(base_url=f"{server.url}/api/v2/aibridge/openai/v1", api_key=token, max_retries=0)

    async def offered() -> list[str]:
        sent = len(fake.requests)
        await client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
        return [n for r in fake.requests[sent:] for n in tool_names("chat", r.json) if n.startswith("bmcp_")]

    assert await offered() == []                  # down: the request goes on without its tools
    assert "MCP server late" in server.output() and "list failed" in server.output()
    # The open --prometheus-address listener: this module's database has its owner from an earlier server.
    status, metrics = await Client(f"http://{server.env['CODER_PROMETHEUS_ADDRESS']}", "").get("/metrics")
    assert status == 200
    assert 'coder_aibridged_mcp_server_errors_total{operation="list",server="late"} 1.0' in metrics
    mcp.start()
    await asyncio.sleep(3.2)                      # the retry delay (the refresh interval here)
    names = await offered()
    assert names == ["bmcp_late_add", "bmcp_late_fail", "bmcp_late_lookup_secret", "bmcp_late_slow"]
    listed = mcp.stats()["tools_list"]
    for _ in range(5):                            # within the refresh interval: the cached list
        assert await offered() == names
    assert mcp.stats()["tools_list"] == listed == 1
    await asyncio.sleep(3.2)
    assert await offered() == names
    assert mcp.stats()["tools_list"] == 2         # refreshed once it was due
    # This server shares the module's database: its last records must not land in the next test's.
    await settled(Client(server.url, token))


# ---------------------------------------------------------------- the real Claude Code CLI

@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
async def test_claude_code_gets_an_answer_only_the_injected_tool_knows(mcp_bridge: McpBridge,
                                                                      tmp_path: Path) -> None:
    """Claude Code, configured with nothing but the bridge's URL and a token, asks for the secret: the
    bridge offers the MCP tool, runs the model's call to it and streams one answer quoting its result."""
    clients = npm_clients()
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    owner = mcp_bridge.owner()
    before, sent_before = await ids(owner), len(mcp_bridge.fake.requests)
    env = client_env(home, clients.node, {
        "ANTHROPIC_BASE_URL": f"{mcp_bridge.server.url}/api/v2/aibridge/anthropic",
        "ANTHROPIC_API_KEY": mcp_bridge.token, "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "ANTHROPIC_CUSTOM_HEADERS": "x-fake-tool: lookup_secret"})
    proc = await asyncio.create_subprocess_exec(
        str(clients.claude), "-p", "What is the secret of fake?", "--model", "claude-opus-5-5-scenario-injected_echo",
        env=env, cwd=work, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    sent = upstream_calls(mcp_bridge, sent_before)
    assert proc.returncode == 0, (out, err, mcp_bridge.server.output()[-3000:])
    assert out.decode().strip() == f"The tool ran fine and returned {SECRET}"
    first, second = sent                                  # Claude Code made one request; the bridge two calls
    names = tool_names("messages", first.json)
    assert names[:3] == OFFERED and "Bash" in names[3:]   # injected tools first, then Claude Code's own
    assert last_tool_result("messages", second.json) == (SECRET, False)
    record = await latest(owner, after=before)
    assert record["client"] == "Claude Code"
    assert [(t["tool"], t["injected"], t["server_url"]) for t in record["tool_usages"]] == [
        ("lookup_secret", True, mcp_bridge.mcp.url)]
    assert len(record["token_usages"]) == 2


@pytest.mark.timeout(INSTALL_TIMEOUT + 300)
async def test_codex_gets_an_answer_only_the_injected_tool_knows(mcp_bridge: McpBridge, tmp_path: Path) -> None:
    """Codex over the Responses API: the same, with the model's output items carried over by the bridge."""
    clients = npm_clients()
    home, work = tmp_path / "home", tmp_path / "work"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    work.mkdir()
    (codex_home / "config.toml").write_text(
        'model_provider = "aibridge"\n\n[model_providers.aibridge]\nname = "AI Bridge"\n'
        f'base_url = "{mcp_bridge.server.url}/api/v2/aibridge/openai/v1"\nenv_key = "AIBRIDGE_TOKEN"\n'
        'wire_api = "responses"\nhttp_headers = { "x-fake-tool" = "lookup_secret" }\n')
    env = client_env(home, clients.node, {"CODEX_HOME": str(codex_home), "AIBRIDGE_TOKEN": mcp_bridge.token})
    owner = mcp_bridge.owner()
    before, sent_before = await ids(owner), len(mcp_bridge.fake.requests)
    proc = await asyncio.create_subprocess_exec(
        clients.node, str(clients.codex), "exec", "--skip-git-repo-check", "--model",
        "gpt-5.5-scenario-injected_echo", "What is the secret of fake?", env=env, cwd=work,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, (out, err, mcp_bridge.server.output()[-3000:])
    assert out.decode().strip() == f"The tool ran fine and returned {SECRET}"
    first, second = upstream_calls(mcp_bridge, sent_before)
    assert [n for n in tool_names("responses", first.json) if n.startswith("bmcp_")] == OFFERED
    assert tool_names("responses", first.json)[-3:] == OFFERED              # after Codex's own tools
    assert last_tool_result("responses", second.json) == (SECRET, False)
    record = await latest(owner, after=before)
    assert record["client"] == "Codex"
    assert [(t["tool"], t["injected"]) for t in record["tool_usages"]] == [("lookup_secret", True)]
    assert len(record["token_usages"]) == 2


# ---------------------------------------------------------------- the web UI

async def test_web_ui_shows_injected_calls(mcp_bridge: McpBridge, page: Page) -> None:  # noqa: F811
    owner = mcp_bridge.owner()
    before = await ids(owner)
    await ask(mcp_bridge, "messages", "injected_echo", False)
    record = await latest(owner, after=before)
    await sign_in(page, mcp_bridge.server.url, mcp_bridge.token, "alice")
    rows = await rows_loaded(page)
    index = next(i for i, row in enumerate(rows) if "scenario-injected_echo" in row)
    await page.click(f"{ROWS}:nth-child({index + 1})")
    await page.wait(f"document.querySelector('#detail-body').textContent.includes({json.dumps(record['id'])})",
                    "the detail panel of the injected call")
    assert await page.texts("#detail-body .tool-name") == ["lookup_secret"]
    head = await page.text("#detail-body .tool-head")
    assert "injected (MCP)" in head and mcp_bridge.mcp.url in head and f"result {len(SECRET)} bytes" in head
    assert not page.problems()
