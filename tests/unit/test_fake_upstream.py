"""The fake upstream speaks the real wire formats: the official SDKs parse every scenario, and the data agree.

The SDKs succeeding (streaming helpers included: they accumulate every event and check its shape) is the
proof that the fake is faithful; raw aiohttp checks cover framing, headers, errors and disconnects.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from tests.fakes.upstream import (
    DEFAULT_ANTHROPIC_KEY,
    DEFAULT_OPENAI_KEY,
    FAKE_UPSTREAM_KEY,
    FakeUpstream,
    build_app,
    expected_usage,
    get_scenario,
    is_followup,
    load_scenarios,
    parse_txtar,
    scenario_names,
)

ROOT = Path(__file__).resolve().parents[2]
OPENAI_AUTH = {"Authorization": f"Bearer {DEFAULT_OPENAI_KEY}"}
ANTHROPIC_AUTH = {"x-api-key": DEFAULT_ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}
AUTH = {"chat": OPENAI_AUTH, "responses": OPENAI_AUTH, "messages": ANTHROPIC_AUTH}
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
MODELS = {"chat": "gpt-4.1", "responses": "gpt-5-mini", "messages": "claude-sonnet-4-5"}


def model(api: str, scenario: str) -> str:
    return f"{MODELS[api]}-scenario-{scenario}"


def answering(api: str) -> list[str]:
    """Scenarios that answer normally (usage reported), minus the 10-second one."""
    return [s for s in scenario_names(api) if expected_usage(api, s) and s != "slow"]


# ---------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture(autouse=True)
def _clear(fake: FakeUpstream) -> None:
    fake.clear()


@pytest.fixture
async def oai(fake: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=fake.openai_base_url, api_key=DEFAULT_OPENAI_KEY, max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def ant(fake: FakeUpstream) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=fake.anthropic_base_url, api_key=DEFAULT_ANTHROPIC_KEY,
                                      max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


# ---------------------------------------------------------------------------------------------------------
# Usage normalization (a reference for what the gateway must compute)
# ---------------------------------------------------------------------------------------------------------


def norm_chat(usage: Mapping[str, Any]) -> dict[str, int]:
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {"input_tokens": usage["prompt_tokens"] - cached, "output_tokens": usage["completion_tokens"],
            "cache_read_input_tokens": cached, "cache_write_input_tokens": 0}


def norm_responses(usage: Mapping[str, Any]) -> dict[str, int]:
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    out = {"input_tokens": usage["input_tokens"] - cached, "output_tokens": usage["output_tokens"],
           "cache_read_input_tokens": cached, "cache_write_input_tokens": 0}
    if reasoning:
        out["reasoning_tokens"] = reasoning
    return out


def norm_messages(usage: Mapping[str, Any]) -> dict[str, int]:
    out = {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"],
           "cache_read_input_tokens": usage.get("cache_read_input_tokens") or 0,
           "cache_write_input_tokens": usage.get("cache_creation_input_tokens") or 0}
    breakdown = usage.get("cache_creation") or {}
    if any(breakdown.values()):
        out["ephemeral_5m_input_tokens"] = breakdown["ephemeral_5m_input_tokens"]
        out["ephemeral_1h_input_tokens"] = breakdown["ephemeral_1h_input_tokens"]
    return out


def sse_events(body: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for each event of a complete SSE body; checks the framing on the way."""
    text = body.decode()
    assert text.endswith("\n\n"), text[-80:]
    events: list[tuple[str | None, str]] = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        name = lines[0][7:] if lines[0].startswith("event: ") else None
        data = [line[6:] for line in lines if line.startswith("data: ")]
        assert len(data) == 1 and len(lines) == (2 if name else 1), block
        events.append((name, data[0]))
    return events


def stream_usage(api: str, body: bytes) -> dict[str, int]:
    usage: dict[str, Any] = {}
    for name, data in sse_events(body):
        if data == "[DONE]":
            continue
        obj = orjson.loads(data)
        if api == "chat" and obj.get("usage"):
            return norm_chat(obj["usage"])
        if api == "responses" and name == "response.completed":
            return norm_responses(obj["response"]["usage"])
        if api == "messages" and name == "message_start":
            usage = dict(obj["message"]["usage"])
        if api == "messages" and name == "message_delta":  # cumulative: later values replace earlier ones
            usage.update({k: v for k, v in obj["usage"].items() if v is not None})
    return norm_messages(usage) if usage else {}


def blocking_usage(api: str, body: bytes) -> dict[str, int]:
    obj = orjson.loads(body)
    if "usage" not in obj:
        return {}
    return {"chat": norm_chat, "responses": norm_responses, "messages": norm_messages}[api](obj["usage"])


def stream_text(api: str, body: bytes) -> str:
    parts: list[str] = []
    for name, data in sse_events(body):
        obj = {} if data == "[DONE]" else orjson.loads(data)
        if api == "chat":
            parts += [c["delta"].get("content") or "" for c in obj.get("choices", [])]
        elif api == "responses" and name == "response.output_text.delta":
            parts.append(obj["delta"])
        elif api == "messages" and name == "content_block_delta" and obj["delta"]["type"] == "text_delta":
            parts.append(obj["delta"]["text"])
    return "".join(parts)


def blocking_text(api: str, body: bytes) -> str:
    obj = orjson.loads(body)
    if api == "chat":
        return str(obj["choices"][0]["message"]["content"] or "")
    if api == "responses":
        messages = [item for item in obj["output"] if item["type"] == "message"]
        return "".join(c["text"] for item in messages for c in item["content"])
    return "".join(b["text"] for b in obj["content"] if b["type"] == "text")


ALL_SCENARIOS = sorted(load_scenarios())


@pytest.mark.parametrize(("api", "name"), ALL_SCENARIOS, ids=[f"{a}-{n}" for a, n in ALL_SCENARIOS])
def test_data_files_agree_with_expected_usage(api: str, name: str) -> None:
    sc = get_scenario(api, name)
    for suffix, followup in (("", False), ("/tool-call", True)):
        stream, blocking = sc.replies.get("streaming" + suffix), sc.replies.get("blocking" + suffix)
        if stream is None and blocking is None:
            continue
        if stream is not None and stream.kind == "sse":
            body = b"".join(c for c, _ in stream.chunks)
            assert stream_usage(api, body) == expected_usage(api, name, streaming=True, followup=followup)
            if blocking is not None and blocking.kind == "json":
                assert stream_text(api, body) == blocking_text(api, blocking.body)
        if blocking is not None and blocking.kind == "json":
            assert blocking_usage(api, blocking.body) == expected_usage(api, name, followup=followup)


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
def test_streams_are_well_formed(api: str) -> None:
    for name in scenario_names(api):
        reply = get_scenario(api, name).replies.get("streaming")
        if reply is None or reply.kind != "sse":
            continue
        events = sse_events(b"".join(c for c, _ in reply.chunks))
        if api == "chat":
            assert all(n is None for n, _ in events)
            chunks = [orjson.loads(d) for _, d in events if d != "[DONE]"]
            ids = {c["id"] for c in chunks if "error" not in c}
            assert len(ids) == 1, name
        else:
            for n, d in events:
                assert orjson.loads(d)["type"] == n, (name, n)
        if api == "responses":
            seqs = [orjson.loads(d)["sequence_number"] for _, d in events]
            assert seqs == list(range(len(seqs))), name


def test_parse_txtar() -> None:
    comment, sections = parse_txtar("hello\nworld\n\n-- a --\n1\n2\n-- b/c --\n{}\n")
    assert comment == "hello\nworld"
    assert sections == {"a": "1\n2", "b/c": "{}\n"}


def test_expected_usage_lookup() -> None:
    assert expected_usage("messages", "cached") == {
        "input_tokens": 9, "output_tokens": 88, "cache_read_input_tokens": 15360,
        "cache_write_input_tokens": 2048, "ephemeral_5m_input_tokens": 1536, "ephemeral_1h_input_tokens": 512,
    }
    assert expected_usage("chat", "gzip") == expected_usage("chat", "simple")
    assert expected_usage("messages", "stream_error") == {}
    assert expected_usage("messages", "stream_error", streaming=True)["input_tokens"] == 17
    assert expected_usage("chat", "tool", followup=True) != expected_usage("chat", "tool")
    with pytest.raises(KeyError):
        expected_usage("chat", "custom_tool")
    with pytest.raises(KeyError):
        expected_usage("chat", "simple", followup=True)


def test_is_followup() -> None:
    assert is_followup("chat", {"messages": [{"role": "user"}, {"role": "tool"}]})
    assert not is_followup("chat", {"messages": [{"role": "tool"}, {"role": "user"}]})
    assert is_followup("responses", {"input": [{"type": "function_call_output"}]})
    assert not is_followup("responses", {"input": "hi"})
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "ok"}]}
    assert is_followup("messages", {"messages": [result, {"role": "system", "content": "reminder"}]})
    assert not is_followup("messages", {"messages": [{"role": "user", "content": "hi"}]})


# ---------------------------------------------------------------------------------------------------------
# Official SDKs: every answering scenario, blocking and streaming
# ---------------------------------------------------------------------------------------------------------

WEATHER_CHAT: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
INJECTED_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["text", "count"],
    "properties": {"text": {"type": "string"}, "count": {"type": "integer"}, "loud": {"type": "boolean"}},
}
INJECTED_INPUT = {"text": "fake", "count": 1}
INJECTED_CHAT: dict[str, Any] = {
    "type": "function", "function": {"name": "bmcp_coder_echo", "parameters": INJECTED_SCHEMA}}
WEATHER_SCHEMA = WEATHER_CHAT["function"]["parameters"]
WEATHER_RESP = {"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}
INJECTED_RESP = {"type": "function", "name": "bmcp_coder_echo", "parameters": INJECTED_SCHEMA}
WEATHER_ANT = {"name": "get_weather", "input_schema": WEATHER_SCHEMA}
INJECTED_ANT = {"name": "bmcp_coder_echo", "input_schema": INJECTED_SCHEMA}


def dump(obj: Any) -> Any:
    return obj.model_dump(mode="json", exclude_none=True, exclude_unset=True)


@pytest.mark.parametrize("scenario", answering("chat"))
async def test_openai_sdk_chat(fake: FakeUpstream, oai: openai.AsyncOpenAI, scenario: str) -> None:
    kwargs: dict[str, Any] = {"model": model("chat", scenario), "tools": [WEATHER_CHAT, INJECTED_CHAT],
                              "messages": [{"role": "user", "content": "hi"}]}
    blocking = await oai.chat.completions.create(**kwargs)
    async with oai.chat.completions.stream(**kwargs, stream_options={"include_usage": True}) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()

    want = expected_usage("chat", scenario)
    assert blocking.usage is not None and final.usage is not None
    assert norm_chat(blocking.usage.model_dump()) == want
    assert norm_chat(final.usage.model_dump()) == want
    b_msg, s_msg = blocking.choices[0].message, final.choices[0].message
    assert (s_msg.content or None) == b_msg.content
    b_calls = [(c.id, c.function.name, c.function.arguments) for c in b_msg.tool_calls or []]
    s_calls = [(c.id, c.function.name, c.function.arguments) for c in s_msg.tool_calls or []]
    assert s_calls == b_calls
    assert final.choices[0].finish_reason == blocking.choices[0].finish_reason
    if scenario == "injected_tool":
        assert b_calls[0][1] == "bmcp_coder_echo" and orjson.loads(b_calls[0][2]) == INJECTED_INPUT
    assert [r.stream for r in fake.requests] == [False, True]
    assert all(r.scenario == scenario for r in fake.requests)


@pytest.mark.parametrize("scenario", answering("responses"))
async def test_openai_sdk_responses(fake: FakeUpstream, oai: openai.AsyncOpenAI, scenario: str) -> None:
    tools: list[Any] = [WEATHER_RESP, INJECTED_RESP]
    if scenario == "custom_tool":
        tools = [{"type": "custom", "name": "apply_patch"}]
    kwargs: dict[str, Any] = {"model": model("responses", scenario), "input": "hi", "tools": tools}
    blocking = await oai.responses.create(**kwargs)
    types = []
    async with oai.responses.stream(**kwargs) as stream:
        async for event in stream:
            types.append(event.type)
        final = await stream.get_final_response()

    want = expected_usage("responses", scenario)
    assert blocking.usage is not None and final.usage is not None
    assert norm_responses(blocking.usage.model_dump()) == want
    assert norm_responses(final.usage.model_dump()) == want
    assert [dump(i) for i in final.output] == [dump(i) for i in blocking.output]
    assert final.id == blocking.id and final.status == "completed"
    assert types[0] == "response.created" and types[-1] == "response.completed"
    kinds = [i.type for i in blocking.output]
    if scenario == "simple":
        assert kinds == ["reasoning", "message"]
        assert blocking.output[0].summary[0].text
        assert "response.reasoning_summary_text.delta" in types
    if scenario == "custom_tool":
        assert kinds == ["custom_tool_call"]
        assert blocking.output[0].input.startswith("*** Begin Patch\n")
        assert "response.custom_tool_call_input.delta" in types
    if scenario == "parallel_tools":
        assert kinds == ["function_call", "function_call"]
    if scenario == "injected_tool":
        call = blocking.output[0]
        assert call.type == "function_call" and call.name == "bmcp_coder_echo"
        assert orjson.loads(call.arguments) == INJECTED_INPUT


@pytest.mark.parametrize("scenario", answering("messages"))
async def test_anthropic_sdk_messages(fake: FakeUpstream, ant: anthropic.AsyncAnthropic,
                                      scenario: str) -> None:
    kwargs: dict[str, Any] = {"model": model("messages", scenario), "max_tokens": 1024,
                              "messages": [{"role": "user", "content": "hi"}],
                              "tools": [WEATHER_ANT, INJECTED_ANT]}
    blocking = await ant.messages.create(**kwargs)
    async with ant.messages.stream(**kwargs) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_message()

    want = expected_usage("messages", scenario)
    assert norm_messages(blocking.usage.model_dump()) == want
    assert norm_messages(final.usage.model_dump()) == want
    assert [dump(b) for b in final.content] == [dump(b) for b in blocking.content]
    assert final.stop_reason == blocking.stop_reason and final.id == blocking.id
    kinds = [b.type for b in blocking.content]
    if scenario == "simple":
        assert kinds == ["thinking", "text"]
        assert blocking.content[0].signature
    if scenario == "tool":
        assert kinds == ["text", "tool_use"] and blocking.stop_reason == "tool_use"
    if scenario == "parallel_tools":
        assert kinds == ["text", "tool_use", "tool_use"]
    if scenario == "cached":
        assert blocking.usage.cache_creation is not None
        assert blocking.usage.cache_creation.ephemeral_1h_input_tokens == 512
    if scenario == "injected_tool":
        call = blocking.content[1]
        assert call.type == "tool_use" and call.name == "bmcp_coder_echo" and call.input == INJECTED_INPUT
    # The Python SDK sends the key as a bearer token; the fake accepts that as well as x-api-key.
    assert fake.requests[0].headers["Authorization"] == f"Bearer {DEFAULT_ANTHROPIC_KEY}"


async def test_followup_answers_in_text(fake: FakeUpstream, oai: openai.AsyncOpenAI,
                                        ant: anthropic.AsyncAnthropic) -> None:
    call: Any = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    chat = await oai.chat.completions.create(model=model("chat", "tool"), messages=[
        {"role": "user", "content": "weather?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}])
    assert chat.choices[0].message.content and chat.choices[0].finish_reason == "stop"
    assert chat.usage is not None
    assert norm_chat(chat.usage.model_dump()) == expected_usage("chat", "tool", followup=True)

    resp = await oai.responses.create(model=model("responses", "custom_tool"), input=[
        {"role": "user", "content": "patch it"},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "done"}])
    assert resp.output_text and resp.usage is not None
    want = expected_usage("responses", "custom_tool", followup=True)
    assert norm_responses(resp.usage.model_dump()) == want

    async with ant.messages.stream(model=model("messages", "injected_tool"), max_tokens=100, messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "x", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
        {"role": "system", "content": "a trailing system item, as Claude Code sends"},
    ]) as stream:
        msg = await stream.get_final_message()
    assert msg.stop_reason == "end_turn"
    assert norm_messages(msg.usage.model_dump()) == expected_usage("messages", "injected_tool", followup=True)
    assert [r.followup for r in fake.requests] == [True, True, True]


async def test_sdk_other_routes(oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic) -> None:
    models = await oai.models.list()
    assert "gpt-4.1" in [m.id for m in models.data]
    assert (await oai.models.retrieve("gpt-4.1")).owned_by == "system"
    page = await ant.models.list()
    assert page.data[0].id.startswith("claude-") and page.has_more is False
    assert (await ant.models.retrieve("claude-sonnet-4-5-20250929")).display_name == "Claude Sonnet 4.5"
    with pytest.raises(anthropic.NotFoundError):
        await ant.models.retrieve("claude-nonexistent")
    count = await ant.messages.count_tokens(model=model("messages", "cached"),
                                            messages=[{"role": "user", "content": "hi"}])
    usage = expected_usage("messages", "cached")
    assert count.input_tokens == usage["input_tokens"] + usage["cache_read_input_tokens"] + usage[
        "cache_write_input_tokens"]
    got = await oai.responses.retrieve("resp_abc123")
    assert got.id == "resp_abc123" and got.output_text


async def test_sdk_errors(oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.RateLimitError) as rl:
        await oai.chat.completions.create(model=model("chat", "http_error"), messages=messages)
    assert rl.value.code == "rate_limit_exceeded" and rl.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.BadRequestError) as br:
        await oai.responses.create(model=model("responses", "bad_request"), input="hi", stream=True)
    assert br.value.code == "context_length_exceeded"
    with pytest.raises(anthropic.RateLimitError) as arl:
        await ant.messages.create(model=model("messages", "http_error"), max_tokens=10, messages=messages)
    assert arl.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert arl.value.response.headers["retry-after"] == "17"
    with pytest.raises(anthropic.BadRequestError):
        await ant.messages.create(model=model("messages", "bad_request"), max_tokens=10, messages=messages,
                                  stream=True)
    with pytest.raises(anthropic.APIStatusError) as ov:
        await ant.messages.create(model=model("messages", "stream_error"), max_tokens=10, messages=messages)
    assert ov.value.status_code == 529
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(model=model("chat", "stream_error"), messages=messages)
    with pytest.raises(openai.AuthenticationError):
        bad = openai.AsyncOpenAI(base_url=oai.base_url, api_key="sk-wrong-key-000", max_retries=0)
        await bad.models.list()
    with pytest.raises(anthropic.AuthenticationError):
        bad_ant = anthropic.AsyncAnthropic(base_url=str(ant.base_url), api_key="sk-ant-wrong", max_retries=0)
        await bad_ant.models.list()


async def test_sdk_stream_errors(oai: openai.AsyncOpenAI, ant: anthropic.AsyncAnthropic) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    chunks = []
    with pytest.raises(openai.APIError, match="server had an error"):
        stream = await oai.chat.completions.create(model=model("chat", "stream_error"), messages=messages,
                                                   stream=True)
        async for chunk in stream:
            chunks.append(chunk)
    assert [c.choices[0].delta.content for c in chunks] == ["", "Shipping", " the", " release"]

    events = [e.type async for e in await oai.responses.create(
        model=model("responses", "stream_error"), input="hi", stream=True)]
    assert events[-1] == "error" and "response.completed" not in events
    events = [e.type async for e in await oai.responses.create(
        model=model("responses", "stream_failed"), input="hi", stream=True)]
    assert events[-1] == "response.failed"

    seen = []
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        async with ant.messages.stream(model=model("messages", "stream_error"), max_tokens=10,
                                       messages=messages) as mstream:
            async for event in mstream:
                seen.append(event.type)
    assert seen[0] == "message_start"


# ---------------------------------------------------------------------------------------------------------
# Raw HTTP checks
# ---------------------------------------------------------------------------------------------------------


async def post(http: aiohttp.ClientSession, fake: FakeUpstream, api: str, body: dict[str, Any],
               headers: Mapping[str, str] | None = None, query: str = "") -> tuple[int, Any, bytes]:
    hdrs = {**AUTH[api], **(headers or {})}
    async with http.post(fake.url + PATHS[api] + query, data=orjson.dumps(body), headers=hdrs) as resp:
        return resp.status, resp.headers, await resp.read()


async def test_chat_include_usage(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body = {"model": "gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    status, headers, raw = await post(http, fake, "chat", body)
    assert status == 200 and headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    events = [orjson.loads(d) for _, d in sse_events(raw) if d != "[DONE]"]
    assert all("usage" not in e and e["choices"] for e in events)
    assert fake.requests[-1].include_usage is False

    status, _, raw = await post(http, fake, "chat", {**body, "stream_options": {"include_usage": True}})
    events = [orjson.loads(d) for _, d in sse_events(raw) if d != "[DONE]"]
    assert all("usage" in e for e in events)
    assert events[-1]["choices"] == [] and norm_chat(events[-1]["usage"]) == expected_usage("chat", "simple")
    assert fake.requests[-1].include_usage is True


async def test_framing_and_headers(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body: dict[str, Any] = {"model": "claude", "stream": True, "messages": []}
    status, headers, raw = await post(http, fake, "messages", body, query="?beta=true")
    assert status == 200 and headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["request-id"].startswith("req_")
    assert raw.startswith(b"event: message_start\ndata: {\"type\":\"message_start\"")
    assert raw.endswith(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    assert fake.requests[-1].query_string == "beta=true" and fake.requests[-1].path == "/v1/messages"

    body = {"model": "gpt-5", "stream": True, "input": "x"}
    status, headers, raw = await post(http, fake, "responses", body)
    assert raw.startswith(b"event: response.created\ndata: {\"type\":\"response.created\"")
    assert headers["x-request-id"].startswith("req_")

    for api in ("chat", "responses", "messages"):
        status, headers, raw = await post(http, fake, api, {"model": "m", "messages": [], "input": "x"})
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert blocking_usage(api, raw) == expected_usage(api, "simple")


async def test_auth_failures(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body = orjson.dumps({"model": "gpt-4.1", "messages": []})
    cases: list[tuple[str, dict[str, str], str]] = [
        ("/v1/chat/completions", {}, "You didn't provide an API key"),
        ("/v1/responses", {"Authorization": "Bearer sk-ant-central"}, "Incorrect API key provided"),
        ("/v1/messages", {}, "x-api-key header is required"),
        ("/v1/messages", {"x-api-key": "sk-openai-central"}, "invalid x-api-key"),
        ("/v1/messages/count_tokens", {"Authorization": "Bearer nope"}, "Invalid bearer token"),
    ]
    for path, headers, message in cases:
        async with http.post(fake.url + path, data=body, headers=headers) as resp:
            assert resp.status == 401, path
            err = await resp.json()
        if path.startswith("/v1/messages"):
            assert err["type"] == "error" and err["error"]["type"] == "authentication_error"
            assert err["error"]["message"] == message and err["request_id"].startswith("req_")
        else:
            assert set(err["error"]) == {"message", "type", "param", "code"}
            assert err["error"]["message"].startswith(message)
    assert [r.status for r in fake.requests] == [401] * len(cases)


async def test_models_shape_follows_credentials(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    async with http.get(fake.url + "/v1/models", headers=OPENAI_AUTH) as resp:
        body = await resp.json()
    assert body["object"] == "list" and body["data"][0]["object"] == "model"
    async with http.get(fake.url + "/v1/models", headers={"x-api-key": DEFAULT_ANTHROPIC_KEY}) as resp:
        body = await resp.json()
    assert body["has_more"] is False and body["first_id"] == body["data"][0]["id"]
    assert body["last_id"] == body["data"][-1]["id"]
    async with http.get(fake.url + "/v1/models", headers={"x-api-key": DEFAULT_OPENAI_KEY}) as resp:
        assert resp.status == 401
    async with http.get(fake.url + "/v1/models/gpt-nope", headers=OPENAI_AUTH) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "model_not_found"
    async with http.post(fake.url + "/api/event_logging/batch", data=b'{"events":[]}',
                         headers={"x-api-key": DEFAULT_ANTHROPIC_KEY}) as resp:
        assert resp.status == 200 and await resp.json() == {}


async def test_unknown_scenario(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    status, _, raw = await post(http, fake, "chat", {"model": "gpt-scenario-nope", "messages": []})
    assert status == 404 and b"known: " in raw and b"parallel_tools" in raw
    status, _, raw = await post(http, fake, "messages", {"model": "claude", "messages": []},
                                headers={"x-fake-scenario": "custom_tool"})
    assert status == 404 and orjson.loads(raw)["error"]["type"] == "not_found_error"
    status, _, raw = await post(http, fake, "responses", {"model": "gpt", "input": "x"},
                                headers={"x-fake-scenario": "custom_tool"})
    assert status == 200 and orjson.loads(raw)["output"][0]["type"] == "custom_tool_call"


async def test_gzip(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body: dict[str, Any] = {"model": model("messages", "gzip"), "messages": []}
    status, headers, raw = await post(http, fake, "messages", body, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert blocking_usage("messages", gzip.decompress(raw)) == expected_usage("messages", "gzip")
    status, headers, raw = await post(http, fake, "messages", body, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in headers and orjson.loads(raw)["type"] == "message"

    forced = {"x-fake-compress": "gzip"}
    body = {"model": model("chat", "http_error"), "messages": []}
    status, headers, raw = await post(http, fake, "chat", body, headers=forced)
    assert status == 429 and headers["Content-Encoding"] == "gzip"
    assert orjson.loads(gzip.decompress(raw))["error"]["code"] == "rate_limit_exceeded"
    body = {"model": model("chat", "injected_tool"), "messages": [], "tools": [INJECTED_CHAT]}
    status, headers, raw = await post(http, fake, "chat", body, headers=forced)
    call = orjson.loads(gzip.decompress(raw))["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "bmcp_coder_echo"


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_disconnect(fake: FakeUpstream, http: aiohttp.ClientSession, api: str) -> None:
    body = {"model": model(api, "disconnect"), "stream": True, "messages": [], "input": "x"}
    got = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(fake.url + PATHS[api], data=orjson.dumps(body), headers=AUTH[api]) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                got += chunk
    reply = get_scenario(api, "disconnect").replies["streaming"]
    assert got == b"".join(c for c, _ in (reply.chunks_no_usage if api == "chat" else reply.chunks))
    assert fake.requests[-1].events_sent == reply.events

    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, fake, api, {**body, "stream": False})


async def test_disconnect_through_sdk(ant: anthropic.AsyncAnthropic) -> None:
    # The SDK lets the transport's error through (httpx2.RemoteProtocolError) rather than wrapping it.
    with pytest.raises(Exception, match=r"incomplete chunked read|Connection error"):
        async with ant.messages.stream(model=model("messages", "disconnect"), max_tokens=10,
                                       messages=[{"role": "user", "content": "hi"}]) as stream:
            await stream.get_final_message()


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_slow_stream_stops_when_client_leaves(fake: FakeUpstream, http: aiohttp.ClientSession,
                                                    api: str) -> None:
    body = {"model": model(api, "slow"), "stream": True, "messages": [], "input": "x"}
    async with http.post(fake.url + PATHS[api], data=orjson.dumps(body), headers=AUTH[api]) as resp:
        await resp.content.readuntil(b"\n\n")
        start = time.monotonic()
        await resp.content.readuntil(b"\n\n")
        await resp.content.readuntil(b"\n\n")
        assert time.monotonic() - start >= 0.3  # two more events, 200 ms apart
        resp.close()
    await fake.wait_cancelled(1, timeout=3)
    rec = fake.requests[-1]
    assert rec.cancelled and 3 <= rec.events_sent < 10
    await asyncio.sleep(0.5)
    assert rec.events_sent < 10 and fake.cancelled == 1


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
async def test_bench(fake: FakeUpstream, http: aiohttp.ClientSession, api: str) -> None:
    body = {"model": model(api, "bench"), "messages": [], "input": "x",
            "stream_options": {"include_usage": True}}
    _, _, raw = await post(http, fake, api, body)
    assert 700 <= len(raw) <= 2000
    _, _, raw = await post(http, fake, api, {**body, "stream": True})
    events = [d for _, d in sse_events(raw) if d != "[DONE]"]
    assert len(events) == 50
    assert stream_usage(api, raw) == expected_usage(api, "bench")


async def test_record_off_and_control_routes(http: aiohttp.ClientSession) -> None:
    async with FakeUpstream(record=False) as quiet:
        await post(http, quiet, "chat", {"model": "m", "messages": []})
        assert quiet.requests == [] and quiet.request_count == 1
        async with http.get(quiet.url + "/__fake/stats") as resp:
            assert await resp.json() == {"requests": 1, "cancelled": 0, "recorded": 0}
    app = build_app(openai_key="k1")
    assert app[FAKE_UPSTREAM_KEY].openai_key == "k1"


async def test_control_routes(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    await post(http, fake, "chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
               headers={"X-Custom": "1"})
    async with http.get(fake.url + "/__fake/requests") as resp:
        log = await resp.json()
    assert log[0]["path"] == "/v1/chat/completions" and ["X-Custom", "1"] in log[0]["headers"]
    assert log[0]["json"]["messages"][0]["content"] == "hi" and log[0]["scenario"] == "simple"
    async with http.delete(fake.url + "/__fake/requests") as resp:
        assert resp.status == 200
    assert fake.requests == []


async def test_runs_as_a_process(http: aiohttp.ClientSession) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.upstream", "--port", "0", "--record",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("READY "), line
        url = f"http://127.0.0.1:{int(line.split()[1])}"
        async with http.post(url + "/v1/messages", headers=ANTHROPIC_AUTH,
                             data=orjson.dumps({"model": "c", "messages": []})) as resp:
            assert resp.status == 200
        async with http.get(url + "/__fake/stats") as resp:
            assert (await resp.json())["recorded"] == 1
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
