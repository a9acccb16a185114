"""Amazon Bedrock end to end: the official ``anthropic`` SDK (and Claude Code's captured request) → a real
server configured with only the Bedrock options → the fake Bedrock (SigV4 checked for real, AWS event-stream
frames) on loopback; records checked in the export."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import anthropic
import orjson
import pytest
from aiohttp import web

from tests.e2e.conftest import ask
from tests.e2e.records import TOKEN_KEYS, expected_totals, ids, latest, totals
from tests.fakes.bedrock import SCENARIOS, SIGNATURE_MISMATCH, FakeBedrock, RecordedRequest, anthropic_model
from tests.harness import Client, Database, ServerProcess, free_port, run_cli

CLIENTS_DIR = Path(__file__).resolve().parents[1] / "data" / "clients"
STREAM = [False, True]

REGION = "us-west-2"
ACCESS_KEY = "AKIDBEDROCKE2E"
SECRET_KEY = "bedrock/e2e/SECRET+KEY/wJalrXUtnFEMIK7MDENGbPxRfiCY"
# The defaults of --aibridge-bedrock-model and --aibridge-bedrock-small-fast-model (not set by these tests).
MAIN_MODEL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
SMALL_MODEL = "global.anthropic.claude-haiku-4-5-20251001-v1:0"

READ_TOOL: Any = {"name": "Read", "description": "Read a file.",
                  "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                                   "required": ["file_path"]}}


def bedrock_env(fake: FakeBedrock, secret: str = SECRET_KEY) -> dict[str, str]:
    """Only the Bedrock options: no Anthropic key anywhere."""
    return {
        "CODER_AIBRIDGE_ENABLED": "true",
        "CODER_AIBRIDGE_BEDROCK_BASE_URL": fake.url,
        "CODER_AIBRIDGE_BEDROCK_REGION": REGION,
        "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY": ACCESS_KEY,
        "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY_SECRET": secret,
        "CODER_AIBRIDGE_SHUTDOWN_GRACE": "5s",
    }


@dataclass
class BedrockBridge:
    server: ServerProcess
    fake: FakeBedrock
    token: str                 # a member's token ("alice")

    @property
    def anthropic_url(self) -> str:
        return f"{self.server.url}/api/v2/aibridge/anthropic"

    def owner(self) -> Client:
        return Client(self.server.url, self.server.admin_token)

    def client(self) -> anthropic.AsyncAnthropic:
        return sdk(self.server, self.token)


def sdk(server: ServerProcess, token: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=f"{server.url}/api/v2/aibridge/anthropic", api_key=token,
                                    max_retries=0, timeout=30)


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeBedrock]:
    bedrock = FakeBedrock(ACCESS_KEY, SECRET_KEY, REGION)
    await bedrock.start()
    try:
        yield bedrock
    finally:
        await bedrock.stop()


@pytest.fixture(scope="module")
async def bridge(module_database: Database, fake: FakeBedrock) -> AsyncIterator[BedrockBridge]:
    server = await ServerProcess(module_database, env=bedrock_env(fake)).start()
    try:
        yield BedrockBridge(server, fake, server.create_user("alice"))
    finally:
        server.stop()
    assert "Traceback" not in server.output(), server.output()[-3000:]


# ---------------------------------------------------------------- helpers

_BLOCK_FIELDS = {"text": ("text",), "thinking": ("thinking", "signature"), "redacted_thinking": ("data",),
                 "tool_use": ("id", "name", "input")}


def blocks(content: Any) -> list[tuple[Any, ...]]:
    """Content blocks (SDK objects or dicts) reduced to what identifies them."""
    out = []
    for block in content:
        data = block if isinstance(block, dict) else block.model_dump()
        out.append((data["type"], *(data.get(k) for k in _BLOCK_FIELDS[data["type"]])))
    return out


def usage_of(scenario: str) -> dict[str, int]:
    return expected_totals(dataclasses.asdict(SCENARIOS[scenario].usage))


def sse(events: list[dict[str, Any]]) -> bytes:
    """Anthropic's SSE framing of stream events (what the bridge must emit for Bedrock's chunks)."""
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


def sse_blocks(body: bytes) -> list[tuple[str, Any]]:
    """(event, parsed data) for each SSE event of a body."""
    found = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n"))
        found.append((fields[b"event"].decode(), orjson.loads(fields[b"data"])))
    return found


def sent(fake: FakeBedrock, before: int, count: int = 1) -> list[RecordedRequest]:
    """The requests the fake received since ``before``; each must have passed the SigV4 check."""
    got = fake.requests[before:]
    assert len(got) == count, [(r.raw_path, r.auth_error) for r in got]
    for request in got:
        assert request.auth_error is None, request.auth_error
    return got


def check_signed_request(request: RecordedRequest, token: str, model: str, stream: bool) -> None:
    operation = "invoke-with-response-stream" if stream else "invoke"
    assert request.raw_path == f"/model/{quote(model, safe='')}/{operation}"
    assert request.model == model and request.operation == operation
    assert f"Credential={ACCESS_KEY}/" in request.headers["authorization"]
    assert f"/{REGION}/bedrock/aws4_request" in request.headers["authorization"]
    for name, value in request.headers.items():
        assert token not in value, name                 # the user's token never leaves the bridge
        assert name not in ("x-api-key", "anthropic-version", "anthropic-beta"), name
    assert isinstance(request.json, dict)
    assert request.json["anthropic_version"] == "bedrock-2023-05-31"
    assert "model" not in request.json and "stream" not in request.json


def check_record(record: dict[str, Any], *, requested: str, model: str, prompt: str, stream: bool) -> None:
    assert record["provider"] == "anthropic" and record["provider_name"] == "anthropic"
    assert record["model"] == model
    assert record["metadata"]["requested_model"] == requested
    assert record["metadata"]["streaming"] is stream
    assert record["initiator"]["username"] == "alice"
    assert [p["prompt"] for p in record["user_prompts"]] == [prompt]


# ---------------------------------------------------------------- text, thinking, haiku mapping

@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize(("requested", "model"), [("claude-sonnet-4-6", MAIN_MODEL),
                                                  ("claude-opus-4-1", MAIN_MODEL),
                                                  ("claude-3-haiku-20240307", SMALL_MODEL),
                                                  ("claude-haiku-4-5", SMALL_MODEL)])
async def test_text_and_thinking_with_model_mapping(bridge: BedrockBridge, requested: str, model: str,
                                                    stream: bool) -> None:
    owner = bridge.owner()
    before, seen = len(bridge.fake.requests), await ids(owner)
    prompt = f"scenario:simple say hi ({requested}, stream={stream})"
    message = await ask(bridge.client(), stream, model=requested, max_tokens=1024,
                        messages=[{"role": "user", "content": prompt}])
    scenario = SCENARIOS["simple"]
    assert blocks(message.content) == blocks(scenario.content)
    assert message.id == scenario.message_id and message.model == anthropic_model(model)
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (scenario.usage.input_tokens,
                                                                          scenario.usage.output_tokens)
    (request,) = sent(bridge.fake, before)
    check_signed_request(request, bridge.token, model, stream)
    assert request.scenario == "simple"

    record = await latest(owner, after=seen)
    check_record(record, requested=requested, model=model, prompt=prompt, stream=stream)
    assert totals(record) == usage_of("simple")
    assert len(record["token_usages"]) == 1
    assert record["token_usages"][0]["provider_response_id"] == message.id
    assert [t["content"] for t in record["model_thoughts"]] == [
        b.thinking for b in message.content if b.type == "thinking"]
    assert record["tool_usages"] == []
    # model filters see the Bedrock model
    status, body = await owner.get(f"/api/v2/aibridge/interceptions?limit=1000&q=model:{model}")
    assert status == 200 and record["id"] in {r["id"] for r in body["results"]}


# ---------------------------------------------------------------- tool call

@pytest.mark.parametrize("stream", STREAM)
async def test_tool_call(bridge: BedrockBridge, stream: bool) -> None:
    owner = bridge.owner()
    before, seen = len(bridge.fake.requests), await ids(owner)
    prompt = f"scenario:tool_use read /tmp/blah/foo ({stream})"
    message = await ask(bridge.client(), stream, model="claude-sonnet-4-6", max_tokens=2048, tools=[READ_TOOL],
                        messages=[{"role": "user", "content": prompt}])
    scenario = SCENARIOS["tool_use"]
    assert blocks(message.content) == blocks(scenario.content)
    assert message.stop_reason == "tool_use"
    assert message.usage.cache_read_input_tokens == scenario.usage.cache_read_input_tokens
    assert message.usage.cache_creation_input_tokens == scenario.usage.cache_write_input_tokens
    (request,) = sent(bridge.fake, before)
    check_signed_request(request, bridge.token, MAIN_MODEL, stream)
    assert request.json["tools"] == [READ_TOOL]

    record = await latest(owner, after=seen)
    check_record(record, requested="claude-sonnet-4-6", model=MAIN_MODEL, prompt=prompt, stream=stream)
    assert totals(record) == usage_of("tool_use")
    assert all(totals(record)[k] for k in TOKEN_KEYS)          # all four counts are exercised here
    uses = [b for b in message.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert [(t["tool"], t["provider_tool_call_id"], json.loads(t["input"])) for t in record["tool_usages"]] == [
        (b.name, b.id, b.input) for b in uses]
    assert record["tool_usages"][0]["input"] and record["tool_usages"][0]["injected"] is False
    assert record["tool_usages"][0]["provider_response_id"] == message.id


# ---------------------------------------------------------------- thinking

@pytest.mark.parametrize("stream", STREAM)
async def test_thinking(bridge: BedrockBridge, stream: bool) -> None:
    owner = bridge.owner()
    before, seen = len(bridge.fake.requests), await ids(owner)
    prompt = f"scenario:thinking how many angels fit on a pin? ({stream})"
    message = await ask(bridge.client(), stream, model="claude-sonnet-4-6", max_tokens=4096,
                        thinking={"type": "enabled", "budget_tokens": 2048},
                        messages=[{"role": "user", "content": prompt}])
    scenario = SCENARIOS["thinking"]
    assert blocks(message.content) == blocks(scenario.content)
    (request,) = sent(bridge.fake, before)
    check_signed_request(request, bridge.token, MAIN_MODEL, stream)
    assert request.json["thinking"] == {"type": "enabled", "budget_tokens": 2048}

    record = await latest(owner, after=seen)
    check_record(record, requested="claude-sonnet-4-6", model=MAIN_MODEL, prompt=prompt, stream=stream)
    assert totals(record) == usage_of("thinking")
    thoughts = [b["thinking"] for b in scenario.content if b["type"] == "thinking"]
    assert [t["content"] for t in record["model_thoughts"]] == thoughts
    assert [b.thinking for b in message.content if b.type == "thinking"] == thoughts


async def test_adaptive_thinking_is_translated_for_bedrock(bridge: BedrockBridge) -> None:
    """Claude Code asks for adaptive thinking; Sonnet 4.5 on Bedrock only takes a fixed budget."""
    owner = bridge.owner()
    before, seen = len(bridge.fake.requests), await ids(owner)
    message = await ask(bridge.client(), True, model="claude-opus-4-8", max_tokens=8000,
                        thinking={"type": "adaptive"}, messages=[{"role": "user", "content": "scenario:thinking"}])
    assert blocks(message.content) == blocks(SCENARIOS["thinking"].content)
    (request,) = sent(bridge.fake, before)
    assert request.json["thinking"] == {"type": "enabled", "budget_tokens": 6400}
    record = await latest(owner, after=seen)
    check_record(record, requested="claude-opus-4-8", model=MAIN_MODEL, prompt="scenario:thinking", stream=True)
    assert totals(record) == usage_of("thinking")


# ---------------------------------------------------------------- failures

async def raw_stream(bridge: BedrockBridge, prompt: str) -> tuple[int, str, bytes]:
    body = {"model": "claude-sonnet-4-6", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": prompt}]}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.post(
            f"{bridge.anthropic_url}/v1/messages", json=body,
            headers={"x-api-key": bridge.token, "anthropic-version": "2023-06-01"}) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


@pytest.mark.parametrize(("name", "error_type"), [("stream_error", "overloaded_error"),
                                                  ("throttled", "rate_limit_error")])
async def test_exception_frame_mid_stream(bridge: BedrockBridge, name: str, error_type: str) -> None:
    owner = bridge.owner()
    scenario = SCENARIOS[name]
    assert scenario.failure is not None
    upstream_message = scenario.failure.message

    # Raw: the events before the exception frame, byte for byte as Anthropic frames them, then one error event.
    before, seen = len(bridge.fake.requests), await ids(owner)
    prompt = f"scenario:{name} raw"
    status, content_type, body = await raw_stream(bridge, prompt)
    assert status == 200 and content_type.startswith("text/event-stream")
    (request,) = sent(bridge.fake, before)
    assert request.operation == "invoke-with-response-stream"
    events = scenario.sent_events(MAIN_MODEL)
    assert body.startswith(sse(events)), body[:2000]
    assert sse_blocks(body[len(sse(events)):]) == [
        ("error", {"type": "error", "error": {"type": error_type, "message": upstream_message}})]
    record = await latest(owner, after=seen)
    check_record(record, requested="claude-sonnet-4-6", model=MAIN_MODEL, prompt=prompt, stream=True)
    assert record["metadata"]["outcome"] == "error"
    assert upstream_message in record["metadata"]["error"]
    assert record["metadata"]["upstream_status"] == 200
    assert totals(record)["input_tokens"] == scenario.usage.input_tokens     # usage seen before the failure

    # The SDK: raises with the mapped type and Bedrock's message.
    seen = await ids(owner)
    with pytest.raises(anthropic.APIStatusError) as info:
        await ask(bridge.client(), True, model="claude-sonnet-4-6", max_tokens=100,
                  messages=[{"role": "user", "content": f"scenario:{name} sdk"}])
    assert info.value.body == {"type": "error", "error": {"type": error_type, "message": upstream_message}}
    record = await latest(owner, after=seen)
    assert record["metadata"]["outcome"] == "error"


async def test_stream_failure_scenario_called_blocking_is_an_http_error(bridge: BedrockBridge) -> None:
    """InvokeModel (not streaming) answers the same failure as an HTTP error: 424 ModelErrorException."""
    owner = bridge.owner()
    seen = await ids(owner)
    failure = SCENARIOS["stream_error"].failure
    assert failure is not None
    with pytest.raises(anthropic.APIStatusError) as info:
        await ask(bridge.client(), False, model="claude-sonnet-4-6", max_tokens=100,
                  messages=[{"role": "user", "content": "scenario:stream_error"}])
    assert info.value.status_code == failure.http_status
    assert info.value.body == {"type": "error", "error": {"type": "api_error", "message": failure.message}}
    record = await latest(owner, after=seen)
    assert record["metadata"]["outcome"] == "error"
    assert record["metadata"]["upstream_status"] == failure.http_status


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize(("name", "error_class", "error_type"), [
    ("http_throttled", anthropic.RateLimitError, "rate_limit_error"),
    ("validation", anthropic.BadRequestError, "invalid_request_error"),
    ("unavailable", anthropic.APIStatusError, "overloaded_error"),
])
async def test_http_errors(bridge: BedrockBridge, name: str, error_class: type[anthropic.APIStatusError],
                           error_type: str, stream: bool) -> None:
    owner = bridge.owner()
    failure = SCENARIOS[name].http_failure
    assert failure is not None
    before, seen = len(bridge.fake.requests), await ids(owner)
    prompt = f"scenario:{name} ({stream})"
    with pytest.raises(error_class) as info:
        await ask(bridge.client(), stream, model="claude-haiku-4-5", max_tokens=100,
                  messages=[{"role": "user", "content": prompt}])
    assert info.value.status_code == failure.status                   # Bedrock's status, kept for retries
    assert info.value.body == {"type": "error", "error": {"type": error_type, "message": failure.message}}
    assert info.value.response.headers.get("x-amzn-RequestId")
    (request,) = sent(bridge.fake, before)
    check_signed_request(request, bridge.token, SMALL_MODEL, stream)
    record = await latest(owner, after=seen)
    check_record(record, requested="claude-haiku-4-5", model=SMALL_MODEL, prompt=prompt, stream=stream)
    assert record["metadata"]["outcome"] == "error"
    assert record["metadata"]["upstream_status"] == failure.status
    assert totals(record) == expected_totals({})


async def test_wrong_secret_is_refused_by_bedrock(fake: FakeBedrock, database: Database) -> None:
    """The fake recomputes the signature with the real secret: a wrong one is a 403 from Bedrock."""
    server = await ServerProcess(database, env=bedrock_env(fake, secret="not-the-secret")).start()
    try:
        token = server.create_user("mallory")
        member = Client(server.url, token)
        for stream in STREAM:
            before, seen = len(fake.requests), await ids(member)
            with pytest.raises(anthropic.PermissionDeniedError) as info:
                await ask(sdk(server, token), stream, model="claude-sonnet-4-6", max_tokens=10,
                          messages=[{"role": "user", "content": "scenario:simple hi"}])
            assert info.value.status_code == 403
            assert info.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                                  "message": SIGNATURE_MISMATCH}}
            (request,) = fake.requests[before:]
            assert request.auth_error == "InvalidSignatureException"
            record = await latest(member, after=seen)
            assert record["metadata"]["outcome"] == "error" and record["metadata"]["upstream_status"] == 403
            assert record["model"] == MAIN_MODEL and record["metadata"]["streaming"] is stream
    finally:
        server.stop()
    assert "Traceback" not in server.output()


# ---------------------------------------------------------------- Claude Code's request, replayed

async def parse_with_sdk(body: bytes) -> anthropic.types.Message:
    """Serve ``body`` as an Anthropic stream and let the SDK accumulate it (it raises on anything invalid)."""
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/messages", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}", api_key="k", max_retries=0,
                                          timeout=10)
        async with client.messages.stream(model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}]) \
                as events:
            return await events.get_final_message()
    finally:
        await runner.cleanup()


async def test_claude_code_request_through_bedrock(bridge: BedrockBridge) -> None:
    owner = bridge.owner()
    before, seen = len(bridge.fake.requests), await ids(owner)
    capture = json.loads((CLIENTS_DIR / "claude_code_messages.json").read_text())
    headers = [(k, v.replace("__TOKEN__", bridge.token)) for k, v in capture["headers"]]
    url = f"{bridge.anthropic_url}{capture['path']}?{capture['query']}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, \
            session.post(url, data=orjson.dumps(capture["body"]), headers=headers) as resp:
        status, content_type, body = resp.status, resp.headers.get("Content-Type", ""), await resp.read()
    assert status == 200, body[:2000]
    assert content_type.startswith("text/event-stream")
    scenario = SCENARIOS["simple"]
    assert body == sse(scenario.events(MAIN_MODEL))
    message = await parse_with_sdk(body)
    assert blocks(message.content) == blocks(scenario.content)
    assert message.usage.output_tokens == scenario.usage.output_tokens

    (request,) = sent(bridge.fake, before)
    check_signed_request(request, bridge.token, MAIN_MODEL, stream=True)
    for name in ("x-claude-code-session-id", "user-agent", "x-app", "anthropic-dangerous-direct-browser-access"):
        assert name not in request.headers, name                     # only what is signed goes to Bedrock
    sent_body = request.json
    assert "metadata" not in sent_body
    assert sent_body["anthropic_beta"] == ["interleaved-thinking-2025-05-14", "context-management-2025-06-27"]
    assert [m["role"] for m in sent_body["messages"]] == ["user"]         # the system item joined the user turn
    assert sent_body["system"] == capture["body"]["system"] and sent_body["tools"] == capture["body"]["tools"]

    record = await latest(owner, after=seen)
    check_record(record, requested="claude-opus-4-8", model=MAIN_MODEL, prompt="list the files in this folder",
                 stream=True)
    assert record["client"] == "Claude Code"
    assert record["client_session_id"] == "5b0f6a1e-7d7c-4d8e-9b1a-2c3d4e5f6a7b"
    assert totals(record) == usage_of("simple")
    assert [t["content"] for t in record["model_thoughts"]] == [
        b["thinking"] for b in scenario.content if b["type"] == "thinking"]


# ---------------------------------------------------------------- routes Bedrock does not have

async def test_passthrough_routes_are_not_supported(bridge: BedrockBridge) -> None:
    before = len(bridge.fake.requests)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for method, tail in (("GET", "v1/models"), ("GET", "v1/models/claude-sonnet-4-5"),
                             ("POST", "v1/messages/count_tokens"), ("POST", "api/event_logging/batch"),
                             ("GET", "v1/messages")):
            path = f"/api/v2/aibridge/anthropic/{tail}"
            async with session.request(method, bridge.server.url + path, data=b"{}",
                                       headers={"x-api-key": bridge.token}) as resp:
                assert resp.status == 404, (method, tail)
                assert orjson.loads(await resp.read()) == {"type": "error", "error": {
                    "type": "not_found_error", "message": f"route not supported: {method} {path}"}}
    with pytest.raises(anthropic.NotFoundError) as info:
        await bridge.client().models.list()
    assert "route not supported" in str(info.value.body)
    assert len(bridge.fake.requests) == before                     # nothing reached Bedrock


# ---------------------------------------------------------------- start-up without credentials

@pytest.mark.parametrize(("extra", "option", "fragment"), [
    ({}, "--aibridge-bedrock-access-key", "no AWS credentials found"),
    ({"CODER_AIBRIDGE_BEDROCK_ACCESS_KEY": ACCESS_KEY}, "--aibridge-bedrock-access-key", "set both"),
])
async def test_startup_without_credentials_fails_with_one_line(tmp_path: Path, extra: dict[str, str], option: str,
                                                               fragment: str) -> None:
    home = tmp_path / "home"                        # no ~/.aws here; AWS_* are not inherited (run_cli)
    home.mkdir()
    env = {"HOME": str(home), "CODER_AIBRIDGE_DATA_DIR": str(tmp_path / "data"),
           "CODER_HTTP_ADDRESS": f"127.0.0.1:{free_port()}", "CODER_AIBRIDGE_ENABLED": "true",
           "CODER_AIBRIDGE_BEDROCK_REGION": REGION, "CODER_AIBRIDGE_BEDROCK_BASE_URL": "http://127.0.0.1:9",
           # not a credential: keeps botocore from asking an instance metadata service (a CI runner's role)
           "AWS_EC2_METADATA_DISABLED": "true", **extra}
    result = await asyncio.to_thread(run_cli, ["server"], env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {option}: "), lines[0]
    assert fragment in lines[0]
    assert "shown this once" not in result.stdout
