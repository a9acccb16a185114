"""The bridge end to end: official SDKs → real server process → fake upstream, records checked in the export."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from tests.e2e.conftest import Bridge
from tests.e2e.records import expected_totals, ids, latest, totals
from tests.fakes.upstream import expected_usage, get_scenario
from tests.harness import Client, wait_for

CLIENTS_DIR = Path(__file__).resolve().parents[1] / "data" / "clients"
STREAM = [False, True]


def streaming_body(api: str, scenario: str) -> bytes:
    """Exactly what the fake upstream streams for a scenario (the relay must not change a byte)."""
    return b"".join(chunk for chunk, _ in get_scenario(api, scenario).replies["streaming"].chunks)


def openai_client(bridge: Bridge, token: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=bridge.openai_url, api_key=token or bridge.token, max_retries=0, timeout=30)


def anthropic_client(bridge: Bridge, token: str | None = None) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=bridge.anthropic_url, api_key=token or bridge.token, max_retries=0,
                                    timeout=30)


def check_forwarded(bridge: Bridge, path: str) -> Any:
    """The upstream got the central key and never the user's token."""
    sent = bridge.fake.requests_to(path)[-1]
    for value in sent.headers.values():
        assert bridge.token not in value
    return sent


# ---------------------------------------------------------------- chat completions

async def chat(bridge: Bridge, model: str, stream: bool, prompt: str) -> list[str]:
    client = openai_client(bridge)
    messages: Any = [{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}]
    tool_names: list[str] = []
    if stream:
        async for chunk in await client.chat.completions.create(model=model, messages=messages, stream=True):
            for choice in chunk.choices:
                tool_names += [c.function.name for c in choice.delta.tool_calls or [] if c.function and c.function.name]
    else:
        done = await client.chat.completions.create(model=model, messages=messages)
        tool_names = [c.function.name for c in done.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
    return tool_names


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("scenario", ["simple", "tool", "parallel_tools", "cached"])
async def test_chat_completions(bridge: Bridge, scenario: str, stream: bool) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    model = f"gpt-4.1-scenario-{scenario}"
    tools = await chat(bridge, model, stream, f"chat {scenario} {stream}")
    sent = check_forwarded(bridge, "/v1/chat/completions")
    assert sent.headers["Authorization"] == "Bearer sk-openai-central"
    if stream:
        assert sent.include_usage, "the bridge must ask for usage on streams"
    record = await latest(owner, f"model:{model}", after=before)
    assert record["provider"] == "openai" and record["provider_name"] == "openai"
    assert record["initiator"]["username"] == "alice"
    assert record["metadata"]["streaming"] is stream
    assert [p["prompt"] for p in record["user_prompts"]] == [f"chat {scenario} {stream}"]
    assert totals(record) == expected_totals(expected_usage("chat", scenario, streaming=stream))
    assert len(record["token_usages"]) == 1
    assert [t["tool"] for t in record["tool_usages"]] == tools
    for tool in record["tool_usages"]:
        assert tool["provider_tool_call_id"] and json.loads(tool["input"]) is not None
        assert tool["injected"] is False


async def test_chat_stream_keeps_client_stream_options(bridge: Bridge) -> None:
    client = openai_client(bridge)
    chunks = [c async for c in await client.chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    assert bridge.fake.requests_to("/v1/chat/completions")[-1].json["stream_options"] == {"include_usage": True}


# ---------------------------------------------------------------- responses

@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("scenario", ["simple", "tool", "parallel_tools", "cached", "custom_tool"])
async def test_responses(bridge: Bridge, scenario: str, stream: bool) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    client = openai_client(bridge)
    model = f"gpt-5-scenario-{scenario}"
    prompt = f"responses {scenario} {stream}"
    if stream:
        kinds = [e.type async for e in await client.responses.create(model=model, input=prompt, stream=True)]
        assert kinds[-1] == "response.completed"
        calls: list[Any] = []
    else:
        done = await client.responses.create(model=model, input=prompt)
        calls = [o for o in done.output if o.type in ("function_call", "custom_tool_call")]
    check_forwarded(bridge, "/v1/responses")
    record = await latest(owner, f"model:{model}", after=before)
    assert [p["prompt"] for p in record["user_prompts"]] == [prompt]
    assert totals(record) == expected_totals(expected_usage("responses", scenario, streaming=stream))
    usage = expected_usage("responses", scenario, streaming=stream)
    if usage.get("reasoning_tokens"):
        assert any(usage["reasoning_tokens"] in u["metadata"].values() for u in record["token_usages"])
    if not stream:
        assert [(t["tool"], t["provider_tool_call_id"]) for t in record["tool_usages"]] == [
            (c.name, c.call_id) for c in calls]
    expected_tools = {"tool": 1, "parallel_tools": 2, "custom_tool": 1}.get(scenario, 0)
    assert len(record["tool_usages"]) == expected_tools
    if scenario == "custom_tool":
        assert not record["tool_usages"][0]["input"].startswith("{")   # raw text, not JSON
    if scenario == "simple":
        assert record["model_thoughts"] and record["model_thoughts"][0]["content"]


# ---------------------------------------------------------------- anthropic messages

@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("scenario", ["simple", "tool", "parallel_tools", "cached"])
async def test_messages(bridge: Bridge, scenario: str, stream: bool) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    client = anthropic_client(bridge)
    model = f"claude-sonnet-4-5-scenario-{scenario}"
    prompt = f"messages {scenario} {stream}"
    kwargs: Any = {"model": model, "max_tokens": 1024, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        async with client.messages.stream(**kwargs) as events:
            message = await events.get_final_message()
    else:
        message = await client.messages.create(**kwargs)
    sent = check_forwarded(bridge, "/v1/messages")
    assert sent.headers["x-api-key"] == "sk-ant-central"
    record = await latest(owner, f"model:{model}", after=before)
    assert record["provider"] == "anthropic"
    assert [p["prompt"] for p in record["user_prompts"]] == [prompt]
    usage = expected_usage("messages", scenario, streaming=stream)
    assert totals(record) == expected_totals(usage)
    assert len(record["token_usages"]) == 1
    assert all(u["provider_response_id"] == message.id for u in record["token_usages"])
    tool_uses = [b for b in message.content if b.type == "tool_use"]
    assert [(t["tool"], t["provider_tool_call_id"], json.loads(t["input"])) for t in record["tool_usages"]] == [
        (b.name, b.id, b.input) for b in tool_uses]
    thinking = [b.thinking for b in message.content if b.type == "thinking"]
    assert [t["content"] for t in record["model_thoughts"]] == thinking
    if usage.get("ephemeral_1h_input_tokens"):
        assert record["token_usages"][0]["metadata"]


# ---------------------------------------------------------------- real clients' requests, replayed

async def replay(bridge: Bridge, name: str) -> tuple[aiohttp.ClientResponse, bytes, dict[str, Any]]:
    capture = json.loads((CLIENTS_DIR / name).read_text())
    headers = [(k, v.replace("__TOKEN__", bridge.token)) for k, v in capture["headers"]]
    provider = "anthropic" if capture["path"].startswith("/v1/messages") else "openai"
    url = f"{bridge.server.url}/api/v2/aibridge/{provider}{capture['path']}"
    if capture["query"]:
        url += "?" + capture["query"]
    async with aiohttp.ClientSession(auto_decompress=True) as session, \
            session.post(url, data=orjson.dumps(capture["body"]), headers=headers) as resp:
        return resp, await resp.read(), capture


async def test_claude_code_request_passes_through_intact(bridge: Bridge) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    resp, body, capture = await replay(bridge, "claude_code_messages.json")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert body == streaming_body("messages", "simple")
    sent = check_forwarded(bridge, "/v1/messages")
    assert sent.query_string == "beta=true"
    assert sent.json == capture["body"], "the body must reach the upstream exactly as sent"
    assert sent.headers["x-api-key"] == "sk-ant-central"
    for name in ("anthropic-beta", "anthropic-version", "X-Claude-Code-Session-Id", "User-Agent", "x-app"):
        assert sent.headers[name] == dict(capture["headers"])[name]
    record = await latest(owner, "model:claude-opus-4-8", after=before)
    assert record["client"] == "Claude Code"
    assert record["client_session_id"] == "5b0f6a1e-7d7c-4d8e-9b1a-2c3d4e5f6a7b"
    assert [p["prompt"] for p in record["user_prompts"]] == ["list the files in this folder"]
    assert totals(record) == expected_totals(expected_usage("messages", "simple", streaming=True))


async def test_codex_request_passes_through_intact(bridge: Bridge) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    resp, body, capture = await replay(bridge, "codex_responses.json")
    assert resp.status == 200
    assert body == streaming_body("responses", "simple")
    sent = check_forwarded(bridge, "/v1/responses")
    assert sent.json == capture["body"]
    assert sent.headers["originator"] == "codex_exec"
    assert sent.headers["session-id"] == "0b9d1c2e-3f40-7a51-8b62-9c7d8e9f0a1b"
    assert "zstd" not in sent.headers.get("Accept-Encoding", "")
    record = await latest(owner, "model:gpt-5.5", after=before)
    assert record["client"] == "Codex"
    assert record["client_session_id"] == "0b9d1c2e-3f40-7a51-8b62-9c7d8e9f0a1b"
    assert [p["prompt"] for p in record["user_prompts"]] == ["what does this repo do?"]
    assert totals(record) == expected_totals(expected_usage("responses", "simple", streaming=True))


async def test_gzip_upstream_is_decoded_before_parsing(bridge: Bridge) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    client = openai_client(bridge)
    done = await client.chat.completions.create(model="gpt-4.1-scenario-gzip",
                                                messages=[{"role": "user", "content": "z"}])
    assert done.usage is not None
    record = await latest(owner, "model:gpt-4.1-scenario-gzip", after=before)
    assert totals(record) == expected_totals(expected_usage("chat", "gzip"))


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize(("api", "status"), [("chat", 429), ("responses", 429), ("messages", 429)])
async def test_upstream_http_error_keeps_status_and_body(bridge: Bridge, api: str, status: int) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    if api == "messages":
        with pytest.raises(anthropic.RateLimitError) as info:
            await anthropic_client(bridge).messages.create(
                model=f"{api}-scenario-http_error", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    else:
        with pytest.raises(openai.RateLimitError) as info:   # type: ignore[assignment]
            if api == "chat":
                await openai_client(bridge).chat.completions.create(
                    model=f"{api}-scenario-http_error", messages=[{"role": "user", "content": "x"}])
            else:
                await openai_client(bridge).responses.create(model=f"{api}-scenario-http_error", input="x")
    assert info.value.status_code == status
    assert info.value.body  # the upstream's own error body reached the client
    record = await latest(owner, f"model:{api}-scenario-http_error", after=before)
    assert record["metadata"]["outcome"] == "error" and record["metadata"]["upstream_status"] == status


async def raw_stream(bridge: Bridge, api: str, model: str) -> tuple[int, bytes]:
    paths = {"chat": "openai/v1/chat/completions", "responses": "openai/v1/responses",
             "messages": "anthropic/v1/messages"}
    body: dict[str, Any] = {"model": model, "stream": True}
    if api == "responses":
        body["input"] = "tell me"
    else:
        body["messages"] = [{"role": "user", "content": "tell me"}]
        body["max_tokens"] = 100
    async with aiohttp.ClientSession() as session, session.post(
            f"{bridge.server.url}/api/v2/aibridge/{paths[api]}", json=body,
            headers={"Authorization": f"Bearer {bridge.token}"}) as resp:
        return resp.status, await resp.read()


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_error_event_mid_stream_is_relayed_and_recorded(bridge: Bridge, api: str) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    status, body = await raw_stream(bridge, api, f"{api}-scenario-stream_error")
    assert status == 200
    assert body == streaming_body(api, "stream_error")
    record = await latest(owner, f"model:{api}-scenario-stream_error", after=before)
    assert record["metadata"]["outcome"] == "error" and record["metadata"]["error"]
    assert totals(record) == expected_totals(expected_usage(api, "stream_error", streaming=True))


@pytest.mark.parametrize(("api", "marker"), [("chat", b'data: {"error"'), ("responses", b"event: response.failed"),
                                              ("messages", b"event: error")])
async def test_upstream_disconnect_mid_stream_becomes_an_error_event(bridge: Bridge, api: str, marker: bytes) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    status, body = await raw_stream(bridge, api, f"{api}-scenario-disconnect")
    assert status == 200
    assert marker in body.rsplit(b"\n\n", 2)[-2], body[-300:]
    record = await latest(owner, f"model:{api}-scenario-disconnect", after=before)
    assert record["metadata"]["outcome"] == "error"
    assert "connection" in record["metadata"]["error"]


async def test_client_disconnect_cancels_upstream_and_keeps_the_record(bridge: Bridge) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    cancelled_before = sum(r.cancelled for r in bridge.fake.requests)
    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{bridge.anthropic_url}/v1/messages", headers={"x-api-key": bridge.token},
                                  json={"model": "claude-scenario-slow", "max_tokens": 100, "stream": True,
                                        "messages": [{"role": "user", "content": "go slowly"}]})
        await resp.content.readuntil(b"content_block_delta")
        resp.close()                                    # the developer pressed Ctrl-C
    await bridge.fake.wait_cancelled(cancelled_before + 1, timeout=5)
    record = await latest(owner, "model:claude-scenario-slow", after=before)
    assert record["metadata"]["outcome"] == "canceled"
    assert [p["prompt"] for p in record["user_prompts"]] == ["go slowly"]
    assert totals(record)["input_tokens"] > 0          # usage seen so far is kept


async def test_unreachable_upstream_is_a_502_in_provider_shape(bridge: Bridge, module_database: Any) -> None:
    from tests.harness import ServerProcess

    # A port bound here and never listened on refuses connections, and no other process can take
    # it while the test runs (a port that was merely free once may be some server's by then).
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    env = {"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_ANTHROPIC_KEY": "k",
           "CODER_AIBRIDGE_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}/",
           "CODER_AIBRIDGE_OPENAI_KEY": "k", "CODER_AIBRIDGE_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1/"}
    server = await ServerProcess(module_database, env=env).start()
    try:
        token = server.create_user("carl")
        with pytest.raises(anthropic.APIStatusError) as info:
            await anthropic.AsyncAnthropic(base_url=f"{server.url}/api/v2/aibridge/anthropic", api_key=token,
                                           max_retries=0).messages.create(
                model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert info.value.status_code == 502
        assert info.value.body["type"] == "error" and "unreachable" in info.value.body["error"]["message"]  # type: ignore[index]
        with pytest.raises(openai.APIStatusError) as oinfo:
            await openai.AsyncOpenAI(base_url=f"{server.url}/api/v2/aibridge/openai/v1", api_key=token,
                                     max_retries=0).chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": "x"}])
        assert oinfo.value.status_code == 502
        record = await latest(Client(server.url, token))
        assert record["metadata"]["outcome"] == "error"
    finally:
        server.stop()
        closed.close()


async def test_bad_requests_get_provider_shaped_errors(bridge: Bridge) -> None:
    base = f"{bridge.server.url}/api/v2/aibridge"
    async with aiohttp.ClientSession() as session:
        async def call(method: str, path: str, data: bytes = b"", token: str | None = bridge.token) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with session.request(method, base + path, data=data, headers=headers) as resp:
                return resp.status, orjson.loads(await resp.read())

        status, body = await call("POST", "/anthropic/v1/messages", b"{oops")
        assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        status, body = await call("POST", "/openai/v1/chat/completions", b"[]")
        assert status == 400 and body["error"]["type"] == "invalid_request_error"
        status, body = await call("POST", "/openai/v1/embeddings", b"{}")
        assert status == 404
        assert body["error"]["message"] == "route not supported: POST /api/v2/aibridge/openai/v1/embeddings"
        status, body = await call("GET", "/anthropic/v1/files")
        assert status == 404 and "route not supported" in body["error"]["message"]
        status, body = await call("POST", "/gemini/v1/generate", b"{}")
        assert status == 404 and "not configured" in body["message"]
        status, body = await call("POST", "/anthropic/v1/messages", b"{}", token=None)
        assert status == 401 and body["error"]["type"] == "authentication_error"
        status, body = await call("POST", "/openai/v1/responses", b"{}", token="nope")
        assert status == 403 and body["error"]["type"] == "permission_error"
    assert "Traceback" not in bridge.server.output()


# ---------------------------------------------------------------- pass-through

async def test_passthrough_routes_use_the_central_key(bridge: Bridge) -> None:
    models = await openai_client(bridge).models.list()
    assert [m.id async for m in models]
    assert bridge.fake.requests_to("/v1/models")[-1].headers["Authorization"] == "Bearer sk-openai-central"
    page = await anthropic_client(bridge).models.list()
    assert page.data
    assert bridge.fake.requests_to("/v1/models")[-1].headers["x-api-key"] == "sk-ant-central"
    count = await anthropic_client(bridge).messages.count_tokens(
        model="claude-x", messages=[{"role": "user", "content": "count me"}])
    assert count.input_tokens > 0
    check_forwarded(bridge, "/v1/messages/count_tokens")


# ---------------------------------------------------------------- export: filters, roles, cursor, sessions, CLI

async def test_export_filters_roles_and_cursor(bridge: Bridge) -> None:
    alice = Client(bridge.server.url, bridge.token)
    bob = Client(bridge.server.url, bridge.other_token)
    await openai_client(bridge, bridge.other_token).chat.completions.create(
        model="gpt-bob", messages=[{"role": "user", "content": "bob asks"}])
    owner = bridge.owner()
    record = await latest(owner, "initiator:bob")
    assert record["initiator"]["username"] == "bob" and record["model"] == "gpt-bob"

    status, mine = await alice.get("/api/v2/aibridge/interceptions?limit=1000")
    assert status == 200 and mine["results"]
    assert {r["initiator"]["username"] for r in mine["results"]} == {"alice"}
    status, spying = await alice.get("/api/v2/aibridge/interceptions?q=initiator:bob")
    assert status == 200 and spying["results"] == []           # a member only ever sees its own
    status, own = await bob.get("/api/v2/aibridge/interceptions?q=initiator:me")
    assert [r["model"] for r in own["results"]] == ["gpt-bob"]

    status, everything = await owner.get("/api/v2/aibridge/interceptions?limit=1000")
    results = everything["results"]
    assert everything["count"] == len(results) >= 10
    keys = [(r["started_at"], r["id"]) for r in results]
    assert keys == sorted(keys, reverse=True)                   # newest first, id breaks ties
    assert all(r["ended_at"] for r in results)

    # Walk the cursor 3 at a time: same records, same order, no gaps or repeats.
    walked: list[str] = []
    after = ""
    for _ in range(200):
        status, page = await owner.get(f"/api/v2/aibridge/interceptions?limit=3&after_id={after}")
        assert status == 200 and page["count"] == len(results)
        walked += [r["id"] for r in page["results"]]
        if len(page["results"]) < 3:
            break
        after = page["results"][-1]["id"]
    assert walked == [r["id"] for r in results]

    checks: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
        ("provider:anthropic", lambda r: r["provider"] == "anthropic"),
                     ("model:gpt-bob", lambda r: r["model"] == "gpt-bob"),
                     ('client:"Claude Code"', lambda r: r["client"] == "Claude Code"))
    for q, check in checks:
        status, filtered = await owner.get("/api/v2/aibridge/interceptions?limit=1000&q=" + q)
        assert status == 200 and filtered["results"] and all(check(r) for r in filtered["results"]), q
    newest = results[0]["started_at"]
    later = newest.replace("Z", "") + "%2B00:00"
    status, none_after = await owner.get(f"/api/v2/aibridge/interceptions?q=started_after:{later}")
    assert status == 200 and [r["started_at"] for r in none_after["results"]] == [newest]
    status, before = await owner.get(f"/api/v2/aibridge/interceptions?limit=1000&q=started_before:{newest}")
    assert status == 200 and before["count"] == len(results) - 1

    status, clients = await owner.get("/api/v2/aibridge/clients")
    assert status == 200 and {"Claude Code", "Codex"} <= set(clients)
    status, models = await bob.get("/api/v2/aibridge/models")
    assert status == 200 and models == ["gpt-bob"]


async def test_sessions_group_a_clients_interceptions(bridge: Bridge) -> None:
    for _ in range(2):
        await replay(bridge, "codex_responses.json")
    owner = bridge.owner()
    sid = "0b9d1c2e-3f40-7a51-8b62-9c7d8e9f0a1b"

    async def session_listed() -> Any:
        status, body = await owner.get("/api/v2/aibridge/sessions")
        assert status == 200
        return [s for s in body["sessions"] if s["id"] == sid and s["interception_count"] >= 2]

    assert await wait_for(session_listed)
    status, detail = await owner.get(f"/api/v2/aibridge/sessions/{sid}")
    assert status == 200
    assert detail["client"] == "Codex"
    status, recorded = await owner.get(f"/api/v2/aibridge/interceptions?limit=1000&q=session:{sid}")
    actions = [a for thread in detail["threads"] for a in thread["agentic_actions"]]
    assert len(actions) == detail["interception_count"] == recorded["count"]
    assert sum(totals(i)["input_tokens"] for i in recorded["results"]) == \
        detail["token_usage_summary"]["input_tokens"]
    status, _ = await Client(bridge.server.url, bridge.other_token).get(f"/api/v2/aibridge/sessions/{sid}")
    assert status == 404                                          # bob cannot see alice's session
    assert (await owner.get("/api/v2/aibridge/sessions/nope"))[0] == 404


async def test_cli_interceptions_list(bridge: Bridge) -> None:
    await latest(bridge.owner())
    env = {"CODER_URL": bridge.server.url, "CODER_SESSION_TOKEN": bridge.token}
    from tests.harness import run_cli

    result = await asyncio.to_thread(run_cli, ["interceptions", "list", "--provider", "openai", "--limit", "3"], env)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert result.stdout.startswith("[\n  {")                      # an indented JSON array
    assert 1 <= len(listed) <= 3 and all(r["provider"] == "openai" for r in listed)
    assert all(r["initiator"]["username"] == "alice" for r in listed)
    bad = await asyncio.to_thread(run_cli, ["interceptions", "list", "--started-after", "yesterday"], env)
    assert bad.returncode == 2 and "started_after" in bad.stderr


async def test_clients_cannot_send_actor_headers_upstream(bridge: Bridge) -> None:
    await openai_client(bridge).chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "spoof"}],
        extra_headers={"X-AI-Bridge-Actor-ID": "someone-else", "X-AI-Bridge-Actor-Metadata-Username": "root"})
    sent = bridge.fake.requests_to("/v1/chat/completions")[-1]
    assert not [k for k in sent.headers if k.lower().startswith("x-ai-bridge-actor")]


async def test_actor_headers_when_enabled(module_database: Any) -> None:
    from tests.e2e.conftest import bridge_env
    from tests.fakes.upstream import FakeUpstream
    from tests.harness import ServerProcess

    async with FakeUpstream() as fake:
        env = {**bridge_env(fake), "CODER_AIBRIDGE_SEND_ACTOR_HEADERS": "true"}
        server = await ServerProcess(module_database, env=env).start()
        try:
            token = server.create_user("hana")
            status, me = await Client(server.url, token).get("/api/v2/users/me")
            assert status == 200
            await anthropic.AsyncAnthropic(base_url=f"{server.url}/api/v2/aibridge/anthropic", api_key=token,
                                           max_retries=0).messages.create(
                model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "who am i"}],
                extra_headers={"X-AI-Bridge-Actor-ID": "forged"})
            sent = fake.requests_to("/v1/messages")[-1]
            assert sent.headers.getall("X-AI-Bridge-Actor-ID") == [me["id"]]
            assert sent.headers["X-AI-Bridge-Actor-Metadata-Username"] == "hana"
        finally:
            server.stop()
