"""A second opinion on the wire format: aimock (npm ``@copilotkit/aimock``) as the bridge's upstream.

The project's own fake upstream should not be the only judge of what the bridge relays and records.
Here the official ``openai`` (chat completions, responses) and ``anthropic`` (messages) SDKs, blocking
and streaming, talk through a real AI Bridge server to aimock's ``llmock`` CLI, serving the fixtures in
``tests/data/aimock/``::

    SDK ──(Tee: what the client got)──▶ AI Bridge ──▶ Tap (what aimock sent) ──▶ llmock

Every call checks that the client received exactly the bytes aimock sent, that the SDK parsed the
fixture's answer (text, tool calls), and that the interception records exactly the usage, response id
and tool calls found in aimock's own bytes, parsed here independently of the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx2
import openai
import orjson
import pytest
from aiohttp import web

from tests.e2e.clients import INSTALL_TIMEOUT, NpmClients, npm_clients
from tests.e2e.records import TOKEN_KEYS, ids, totals
from tests.harness import Client, Database, ServerProcess, wait_for

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 300)
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "aimock"
START_TIMEOUT = 30.0
CENTRAL_OPENAI_KEY = "sk-central-openai-for-aimock"
CENTRAL_ANTHROPIC_KEY = "sk-central-anthropic-for-aimock"
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
HOP_BY_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


def fixture_response(prompt: str, tool_result: bool = False) -> dict[str, Any]:
    """The ``response`` of the fixture aimock will pick for ``prompt`` (first match wins, as in aimock)."""
    for fx in orjson.loads((FIXTURES / "bridge.json").read_bytes())["fixtures"]:
        match = fx["match"]
        if match["userMessage"] in prompt and match.get("hasToolResult", tool_result) == tool_result:
            return dict(fx["response"])
    raise KeyError(prompt)


# ---------------------------------------------------------------------------------------------------------
# aimock, the tap in front of it, the bridge, and the tee behind the SDKs
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clients() -> NpmClients:
    return npm_clients()


@pytest.fixture(scope="module")
async def aimock(clients: NpmClients, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """``llmock`` on a free port (it prints the one it got); yields its URL."""
    log_path = tmp_path_factory.mktemp("aimock") / "llmock.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            clients.node, str(clients.llmock), "--host", "127.0.0.1", "--port", "0", "--fixtures", str(FIXTURES),
            "--validate-on-load", "--log-level", "info", stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def output() -> str:
        return log_path.read_text(errors="replace")

    try:
        deadline = time.monotonic() + START_TIMEOUT
        while (found := re.search(r"listening on (http://127\.0\.0\.1:\d+)", output())) is None:
            if proc.returncode is not None or time.monotonic() > deadline:
                pytest.fail(f"llmock did not start (exit {proc.returncode}):\n{output()[-3000:]}", pytrace=False)
            await asyncio.sleep(0.05)
        yield found.group(1)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 5)


@dataclass
class Exchange:
    """One request the bridge made to aimock, and aimock's answer exactly as sent."""

    method: str
    path: str
    headers: dict[str, str]
    request: Any
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Tap:
    """A byte-transparent relay in front of aimock that keeps what went through it."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.exchanges: list[Exchange] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        raw = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        exchange = Exchange(request.method, request.path, headers, orjson.loads(raw) if raw else None)
        self.exchanges.append(exchange)
        async with self._session.request(request.method, self.target + request.path_qs, data=raw or None,
                                         headers=headers) as upstream:
            exchange.status = upstream.status
            exchange.response_headers = dict(upstream.headers)
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            body = bytearray()
            async for chunk in upstream.content.iter_any():
                body += chunk
                await response.write(chunk)
            exchange.body = bytes(body)
            await response.write_eof()
            return response


@pytest.fixture(scope="module")
async def tap(aimock: str) -> AsyncIterator[Tap]:
    relay = Tap(aimock)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


class _TeeStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, captured: bytearray) -> None:
        self._inner = inner
        self._captured = captured

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._captured += chunk
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class Tee(httpx2.AsyncBaseTransport):
    """The SDKs' transport: keeps every response body exactly as the bridge sent it."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self.bodies: list[bytearray] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        captured = bytearray()
        self.bodies.append(captured)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        return httpx2.Response(response.status_code, headers=response.headers, request=request,
                               stream=_TeeStream(response.stream, captured), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Setup:
    server: ServerProcess
    tap: Tap
    tee: Tee
    token: str
    oai: openai.AsyncOpenAI
    ant: anthropic.AsyncAnthropic

    def owner(self) -> Client:
        return Client(self.server.url, self.server.admin_token)


@pytest.fixture(scope="module")
async def setup(module_database: Database, tap: Tap) -> AsyncIterator[Setup]:
    server = await ServerProcess(module_database, env={
        "CODER_AIBRIDGE_ENABLED": "true",
        "CODER_AIBRIDGE_OPENAI_KEY": CENTRAL_OPENAI_KEY,
        "CODER_AIBRIDGE_OPENAI_BASE_URL": f"{tap.url}/v1/",
        "CODER_AIBRIDGE_ANTHROPIC_KEY": CENTRAL_ANTHROPIC_KEY,
        "CODER_AIBRIDGE_ANTHROPIC_BASE_URL": f"{tap.url}/",
        "CODER_AIBRIDGE_SHUTDOWN_GRACE": "5s",
    }).start()
    tee = Tee()
    try:
        token = server.create_user("alice")
        base = f"{server.url}/api/v2/aibridge"
        timeout = httpx2.Timeout(30.0)
        oai = openai.AsyncOpenAI(base_url=f"{base}/openai/v1", api_key=token, max_retries=0,
                                 http_client=httpx2.AsyncClient(transport=tee, timeout=timeout))
        ant = anthropic.AsyncAnthropic(base_url=f"{base}/anthropic", api_key=token, max_retries=0,
                                       http_client=httpx2.AsyncClient(transport=tee, timeout=timeout))
        yield Setup(server, tap, tee, token, oai, ant)
        await oai.close()
        await ant.close()
        assert "Traceback" not in server.output(), server.output()[-3000:]
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------------------
# What aimock sent, read from its bytes (independently of the bridge)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    response_id: str
    text: str
    calls: list[tuple[str, str, Any]]          # (call id, tool name, arguments as JSON)
    usage: dict[str, int] | None               # normalized as the bridge must record it (DESIGN §2.4)


def sse(body: bytes) -> list[tuple[str | None, Any]]:
    events: list[tuple[str | None, Any]] = []
    for block in re.split(r"\r?\n\r?\n", body.decode()):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data and data != ["[DONE]"]:
            events.append((name, orjson.loads("\n".join(data))))
    return events


def norm(api: str, usage: dict[str, Any]) -> dict[str, int]:
    if api == "messages":
        return {"input_tokens": usage.get("input_tokens") or 0, "output_tokens": usage.get("output_tokens") or 0,
                "cache_read_input_tokens": usage.get("cache_read_input_tokens") or 0,
                "cache_write_input_tokens": usage.get("cache_creation_input_tokens") or 0}
    prompt, output, details = (("prompt_tokens", "completion_tokens", "prompt_tokens_details") if api == "chat"
                               else ("input_tokens", "output_tokens", "input_tokens_details"))
    cached = (usage.get(details) or {}).get("cached_tokens") or 0
    return {"input_tokens": (usage.get(prompt) or 0) - cached, "output_tokens": usage.get(output) or 0,
            "cache_read_input_tokens": cached, "cache_write_input_tokens": 0}


def parse_answer(api: str, stream: bool, body: bytes) -> Answer:
    if not stream:
        obj = orjson.loads(body)
        usage = norm(api, obj["usage"]) if obj.get("usage") else None
        if api == "chat":
            message = obj["choices"][0]["message"]
            calls = [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                     for c in message.get("tool_calls") or []]
            return Answer(obj["id"], message.get("content") or "", calls, usage)
        if api == "responses":
            text = "".join(p["text"] for i in obj["output"] if i["type"] == "message" for p in i["content"])
            calls = [(i["call_id"], i["name"], json.loads(i["arguments"])) for i in obj["output"]
                     if i["type"] == "function_call"]
            return Answer(obj["id"], text, calls, usage)
        text = "".join(b["text"] for b in obj["content"] if b["type"] == "text")
        calls = [(b["id"], b["name"], b["input"]) for b in obj["content"] if b["type"] == "tool_use"]
        return Answer(obj["id"], text, calls, usage)
    events = sse(body)
    if api == "chat":
        text, usage_obj = "", None
        pending: dict[int, dict[str, str]] = {}
        for _, chunk in events:
            usage_obj = chunk.get("usage") or usage_obj
            for choice in chunk["choices"]:
                text += choice["delta"].get("content") or ""
                for call in choice["delta"].get("tool_calls") or []:
                    slot = pending.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                    slot["id"] += call.get("id") or ""
                    slot["name"] += (call.get("function") or {}).get("name") or ""
                    slot["arguments"] += (call.get("function") or {}).get("arguments") or ""
        calls = [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(pending.items())]
        return Answer(events[0][1]["id"], text, calls, norm(api, usage_obj) if usage_obj else None)
    if api == "responses":
        [final] = [e["response"] for name, e in events if name == "response.completed"]
        answer = parse_answer(api, False, orjson.dumps(final))
        deltas = "".join(e["delta"] for name, e in events if name == "response.output_text.delta")
        assert deltas == answer.text, "aimock's deltas and its final response disagree"
        return answer
    totals: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    response_id = ""
    for name, event in events:
        if name == "message_start":
            response_id = event["message"]["id"]
            totals = dict(event["message"]["usage"])
        elif name == "message_delta":
            totals.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})  # cumulative
        elif name == "content_block_start":
            blocks[event["index"]] = {**event["content_block"], "json": ""}
        elif name == "content_block_delta":
            delta, block = event["delta"], blocks[event["index"]]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                block["json"] += delta["partial_json"]
    ordered = [blocks[i] for i in sorted(blocks)]
    text = "".join(b["text"] for b in ordered if b["type"] == "text")
    calls = [(b["id"], b["name"], json.loads(b["json"] or "{}")) for b in ordered if b["type"] == "tool_use"]
    return Answer(response_id, text, calls, norm(api, totals) if totals else None)


# ---------------------------------------------------------------------------------------------------------
# The three APIs through the SDKs
# ---------------------------------------------------------------------------------------------------------

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                  "required": ["city"]}
TOOL_RESULT = "21 C, sunny"


def conversation(api: str, prompt: str, previous: Answer | None) -> dict[str, Any]:
    """The request's conversation, plus the tool round trip when ``previous`` asked for a tool."""
    if api == "chat":
        messages: list[Any] = [{"role": "user", "content": prompt}]
        if previous is not None:
            messages += [{"role": "assistant", "content": previous.text or None, "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                for cid, name, args in previous.calls]}]
            messages += [{"role": "tool", "tool_call_id": cid, "content": TOOL_RESULT} for cid, _, _ in previous.calls]
        return {"messages": messages, "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city.", "parameters": WEATHER_SCHEMA}}]}
    if api == "responses":
        items: list[Any] = [{"role": "user", "content": prompt}]
        if previous is not None:
            for cid, name, args in previous.calls:
                items += [{"type": "function_call", "call_id": cid, "name": name, "arguments": json.dumps(args)},
                          {"type": "function_call_output", "call_id": cid, "output": TOOL_RESULT}]
        return {"input": items, "tools": [{"type": "function", "name": "get_weather", "strict": False,
                                           "description": "Weather for a city.", "parameters": WEATHER_SCHEMA}]}
    turns: list[Any] = [{"role": "user", "content": prompt}]
    if previous is not None:
        turns += [{"role": "assistant", "content": [{"type": "text", "text": previous.text}, *[
            {"type": "tool_use", "id": cid, "name": name, "input": args} for cid, name, args in previous.calls]]}]
        turns += [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": cid, "content": TOOL_RESULT}
                                               for cid, _, _ in previous.calls]}]
    return {"messages": turns, "max_tokens": 1024, "tools": [
        {"name": "get_weather", "description": "Weather for a city.", "input_schema": WEATHER_SCHEMA}]}


async def call_sdk(s: Setup, api: str, stream: bool, model: str, body: dict[str, Any]) -> Answer:
    """One call through an official SDK; returns what the SDK made of the answer."""
    kwargs = {"model": model, **body}
    if api == "chat":
        if not stream:
            done = await s.oai.chat.completions.create(**kwargs)
            message = done.choices[0].message
            calls = [(c.id, c.function.name, json.loads(c.function.arguments))
                     for c in message.tool_calls or [] if c.type == "function"]
            usage = norm(api, done.usage.model_dump()) if done.usage else None
            return Answer(done.id, message.content or "", calls, usage)
        text, seen_id = "", ""
        slots: dict[int, list[str]] = {}
        async for chunk in await s.oai.chat.completions.create(**kwargs, stream=True):
            seen_id = chunk.id
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for call in choice.delta.tool_calls or []:
                    slot = slots.setdefault(call.index, ["", "", ""])
                    slot[0] += call.id or ""
                    slot[1] += call.function.name or "" if call.function else ""
                    slot[2] += call.function.arguments or "" if call.function else ""
        return Answer(seen_id, text, [(i, n, json.loads(a)) for _, (i, n, a) in sorted(slots.items())], None)
    if api == "responses":
        if stream:
            async with s.oai.responses.stream(**kwargs) as events:
                async for _ in events:
                    pass
                done_r = await events.get_final_response()
        else:
            done_r = await s.oai.responses.create(**kwargs)
        calls = [(o.call_id, o.name, json.loads(o.arguments)) for o in done_r.output if o.type == "function_call"]
        usage = norm(api, done_r.usage.model_dump()) if done_r.usage else None
        return Answer(done_r.id, done_r.output_text, calls, usage)
    if stream:
        async with s.ant.messages.stream(**kwargs) as message_events:
            message = await message_events.get_final_message()
    else:
        message = await s.ant.messages.create(**kwargs)
    text = "".join(b.text for b in message.content if b.type == "text")
    calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    return Answer(message.id, text, calls, norm(api, message.usage.model_dump()))


@dataclass
class Turn:
    sdk: Answer             # what the SDK made of it
    sent: Answer            # what aimock sent (parsed from its bytes)
    exchange: Exchange


async def turn(s: Setup, api: str, stream: bool, model: str, prompt: str, previous: Answer | None = None) -> Turn:
    """One SDK call; checks the bytes the client got are the bytes aimock sent, and the bridge's request."""
    tapped, teed = len(s.tap.exchanges), len(s.tee.bodies)
    sdk = await call_sdk(s, api, stream, model, conversation(api, prompt, previous))
    [exchange] = s.tap.exchanges[tapped:]
    [received] = s.tee.bodies[teed:]
    assert exchange.method == "POST" and exchange.path == PATHS[api] and exchange.status == 200, exchange
    assert "content-encoding" not in {k.lower() for k in exchange.response_headers}
    assert bytes(received) == exchange.body, "the client must get exactly the bytes aimock sent"
    # The upstream got the central key, never the user's token.
    if api == "messages":
        assert exchange.headers["x-api-key"] == CENTRAL_ANTHROPIC_KEY
    else:
        assert exchange.headers["Authorization"] == f"Bearer {CENTRAL_OPENAI_KEY}"
    assert all(s.token not in value for value in exchange.headers.values())
    assert exchange.request["model"] == model and exchange.request.get("stream", False) is stream
    if api == "chat" and stream:
        assert exchange.request["stream_options"] == {"include_usage": True}  # the bridge asks for usage
    return Turn(sdk, parse_answer(api, stream, exchange.body), exchange)


def expected_totals(usage: dict[str, int] | None) -> dict[str, int]:
    return {k: (usage or {}).get(k, 0) for k in TOKEN_KEYS}


async def new_records(owner: Client, before: set[str], count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        status, body = await owner.get("/api/v2/aibridge/interceptions?limit=200")
        assert status == 200, body
        fresh = [r for r in body["results"] if r["id"] not in before and r["ended_at"]]
        return fresh if len(fresh) >= count else None

    found = await wait_for(check, 15)
    assert found is not None and len(found) == count, found
    return sorted(found, key=lambda r: r["started_at"])


def check_record(record: dict[str, Any], api: str, stream: bool, model: str, t: Turn) -> None:
    assert record["provider"] == ("anthropic" if api == "messages" else "openai")
    assert record["model"] == model and record["initiator"]["username"] == "alice"
    assert record["metadata"]["streaming"] is stream
    assert record["metadata"].get("outcome", "ok") != "error", record["metadata"]
    assert t.sent.usage is not None, "aimock always reports usage (chat streams: when asked)"
    assert totals(record) == expected_totals(t.sent.usage)
    assert {u["provider_response_id"] for u in record["token_usages"]} <= {t.sent.response_id}
    if any(t.sent.usage.values()):
        assert [u["provider_response_id"] for u in record["token_usages"]] == [t.sent.response_id]
    assert [(u["tool"], u["provider_tool_call_id"], json.loads(u["input"])) for u in record["tool_usages"]] == [
        (name, cid, args) for cid, name, args in t.sent.calls]


APIS = ["chat", "responses", "messages"]
STREAM = [False, True]


@pytest.mark.parametrize("stream", STREAM, ids=["blocking", "streaming"])
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", ["plain", "counted"])
async def test_answer_and_usage(setup: Setup, api: str, stream: bool, case: str) -> None:
    """``plain``: aimock's own usage numbers; ``counted``: the fixture's. Either way, recorded exactly."""
    owner = setup.owner()
    before = await ids(owner)
    model = f"aimock-{api}-{case}-{'streaming' if stream else 'blocking'}"
    prompt = f"aimock {case}, please"
    t = await turn(setup, api, stream, model, prompt)
    want = fixture_response(prompt)
    assert t.sdk.text == t.sent.text == want["content"]
    assert t.sdk.response_id == t.sent.response_id
    assert t.sdk.calls == t.sent.calls == []
    if t.sdk.usage is not None:
        assert t.sdk.usage == t.sent.usage
    if case == "counted":
        assert t.sent.usage is not None
        assert t.sent.usage["input_tokens"] == want["usage"]["prompt_tokens"]
        assert t.sent.usage["output_tokens"] == want["usage"]["completion_tokens"]
    [record] = await new_records(owner, before, 1)
    check_record(record, api, stream, model, t)
    assert [p["prompt"] for p in record["user_prompts"]] == [prompt]
    assert record["tool_usages"] == []


@pytest.mark.parametrize("stream", STREAM, ids=["blocking", "streaming"])
@pytest.mark.parametrize("api", APIS)
async def test_tool_round_trip(setup: Setup, api: str, stream: bool) -> None:
    owner = setup.owner()
    before = await ids(owner)
    model = f"aimock-{api}-tool-{'streaming' if stream else 'blocking'}"
    prompt = "aimock weather in Lisbon?"
    asked = await turn(setup, api, stream, model, prompt)
    want = fixture_response(prompt)
    [fixture_call] = want["toolCalls"]
    assert [(name, args) for _, name, args in asked.sdk.calls] == [(fixture_call["name"], fixture_call["arguments"])]
    assert asked.sdk.calls == asked.sent.calls
    assert asked.sdk.text == asked.sent.text
    assert asked.sent.text in ("", want["content"])     # text beside a tool call: aimock's choice per API

    answered = await turn(setup, api, stream, model, prompt, previous=asked.sdk)
    assert answered.sdk.text == answered.sent.text == fixture_response(prompt, tool_result=True)["content"]
    assert answered.sdk.calls == []

    first, second = await new_records(owner, before, 2)
    check_record(first, api, stream, model, asked)
    check_record(second, api, stream, model, answered)
    assert len(first["tool_usages"]) == 1
    assert [p["prompt"] for p in first["user_prompts"]] == [prompt]
