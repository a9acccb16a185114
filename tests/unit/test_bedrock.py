"""Amazon Bedrock provider: body translation, model mapping, errors, event stream → SSE, and
real calls to the fake Bedrock (signatures verified with botocore) on loopback."""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import os
import random
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from botocore.credentials import Credentials, RefreshableCredentials
from multidict import CIMultiDict

from aibridge.bridge.apis.base import ToolCall, Usage
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.providers.base import UpstreamError, UpstreamRequest
from aibridge.bridge.providers.bedrock import BedrockConfig, BedrockProvider
from aibridge.bridge.providers.bedrock.body import (
    ANTHROPIC_VERSION,
    bedrock_body,
    fold_system_messages,
    thinking_budget,
)
from aibridge.bridge.providers.bedrock.errors import anthropic_error_type, aws_error_code, translate_error
from aibridge.bridge.providers.bedrock.eventstream import EventStreamTranslator
from aibridge.bridge.providers.bedrock.models import (
    adaptive_thinking_only,
    bedrock_betas,
    parse_model,
    split_betas,
    supports_adaptive_thinking,
)
from aibridge.bridge.providers.bedrock.signing import region_from_url, sign, signing_region
from aibridge.bridge.sse import SSEDecoder, SSEEvent
from aibridge.config import ConfigError
from tests.fakes.bedrock import (
    SCENARIOS,
    SIGNATURE_MISMATCH,
    FakeBedrock,
    anthropic_model,
    chunk_frame,
    encode_frame,
    exception_frame,
)

SONNET_45 = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_45 = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
OPUS_45 = "us.anthropic.claude-opus-4-5-20251101-v1:0"
SONNET_46 = "anthropic.claude-sonnet-4-6"
OPUS_47 = "anthropic.claude-opus-4-7"
REGION = "us-west-2"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

# What Claude Code 2.1 sends (captured): Anthropic-only betas among Bedrock ones.
CLAUDE_CODE_BETAS = (
    "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14,"
    "thinking-token-count-2026-05-13,context-management-2025-06-27,"
    "prompt-caching-scope-2026-01-05,mid-conversation-system-2026-04-07,effort-2025-11-24"
)


def config(
    base_url: str = "",
    region: str = REGION,
    key: str = ACCESS_KEY,
    secret: str = SECRET_KEY,
    model: str = SONNET_45,
    small: str = HAIKU_45,
) -> BedrockConfig:
    return BedrockConfig(region, base_url, key, secret, model, small)


def messages_body(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        **extra,
    }


# ---------------------------------------------------------------- models


def test_parse_model_reads_family_and_version() -> None:
    assert parse_model(SONNET_45) == parse_model("claude-sonnet-4-5")
    assert (parse_model(SONNET_45).family, parse_model(SONNET_45).version) == ("sonnet", (4, 5))
    assert parse_model("us.anthropic.claude-opus-4-6-v1").version == (4, 6)
    assert parse_model("anthropic.claude-opus-4-20250514-v1:0").version == (4, 0)  # a date is no minor
    assert (
        parse_model("anthropic.claude-3-7-sonnet-20250219-v1:0").family,
        parse_model("anthropic.claude-3-7-sonnet-20250219-v1:0").version,
    ) == ("sonnet", (3, 7))
    assert parse_model("anthropic.claude-3-haiku-20240307-v1:0").version == (3, 0)
    assert parse_model("anthropic.claude-opus-5").version == (5, 0)
    assert parse_model("anthropic.claude-mythos-preview") == parse_model("claude-mythos-preview")
    assert parse_model("anthropic.claude-mythos-preview").family == "mythos"
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"
    assert parse_model(arn).version is None


def test_adaptive_thinking_support() -> None:
    assert not supports_adaptive_thinking(SONNET_45)
    assert not supports_adaptive_thinking(OPUS_45)
    assert not supports_adaptive_thinking("arn:aws:bedrock:us-east-1:1:application-inference-profile/x")
    assert supports_adaptive_thinking(SONNET_46)
    assert supports_adaptive_thinking("us.anthropic.claude-opus-4-6-v1")
    assert supports_adaptive_thinking(OPUS_47)
    assert supports_adaptive_thinking("anthropic.claude-mythos-preview")
    assert adaptive_thinking_only(OPUS_47) and adaptive_thinking_only("anthropic.claude-mythos-preview")
    assert not adaptive_thinking_only(SONNET_46) and not adaptive_thinking_only(
        "us.anthropic.claude-opus-4-6-v1"
    )


def test_model_mapping_haiku_to_small_fast_model() -> None:
    provider = BedrockProvider("anthropic", config(model="main-model", small="small-model"))
    assert provider.upstream_model("claude-haiku-4-5-20251001") == "small-model"
    assert provider.upstream_model("claude-3-5-HAIKU-latest") == "small-model"
    assert provider.upstream_model("claude-opus-4-8") == "main-model"
    assert provider.upstream_model("claude-sonnet-4-5") == "main-model"
    assert provider.upstream_model("") == "main-model"


def test_no_passthrough_routes_on_bedrock() -> None:
    provider = BedrockProvider("anthropic", config())
    assert provider.type == "anthropic"
    assert provider.apis == {"v1/messages": MESSAGES}
    for method, tail in [
        ("GET", "v1/models"),
        ("GET", "v1/models/claude-x"),
        ("POST", "v1/messages/count_tokens"),
        ("POST", "api/event_logging/batch"),
    ]:
        assert provider.routes.find(method, tail) is None


def test_url_encodes_model_id() -> None:
    provider = BedrockProvider("anthropic", config(base_url="https://bedrock.example.com/"))
    assert (
        provider.url(SONNET_45, True)
        == "https://bedrock.example.com/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/"
        "invoke-with-response-stream"
    )
    arn = "arn:aws:bedrock:us-east-1:1:application-inference-profile/abc"
    assert provider.url(arn, False).endswith(
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aapplication-inference-profile%2Fabc/invoke"
    )
    assert (
        BedrockProvider("b", config(region="eu-west-1")).url("m", False)
        == "https://bedrock-runtime.eu-west-1.amazonaws.com/model/m/invoke"
    )


def test_signing_region() -> None:
    assert region_from_url("https://bedrock-runtime.eu-west-1.amazonaws.com") == "eu-west-1"
    assert region_from_url("https://bedrock-runtime-fips.us-gov-west-1.amazonaws.com/") == "us-gov-west-1"
    assert (
        region_from_url("https://vpce-0a1b.bedrock-runtime.ap-southeast-2.vpce.amazonaws.com")
        == "ap-southeast-2"
    )
    assert region_from_url("http://127.0.0.1:9000") is None
    assert (
        signing_region("", "https://bedrock-runtime.eu-west-1.amazonaws.com")
        == "eu-west-1"
    )
    assert (
        signing_region("us-east-2", "https://bedrock-runtime.eu-west-1.amazonaws.com")
        == "us-east-2"
    )  # the configured region wins
    assert signing_region("", "http://127.0.0.1:9000") == "us-east-1"


# ---------------------------------------------------------------- body translation


def test_body_drops_model_stream_and_unsupported_fields_and_keeps_the_rest() -> None:
    tools = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]
    body = messages_body(
        stream=True,
        temperature=1,
        system=[{"type": "text", "text": "be brief"}],
        tools=tools,
        tool_choice={"type": "auto"},
        metadata={"user_id": "u"},
        service_tier="auto",
        container={"type": "ephemeral"},
        inference_geo={"allow": ["us"]},
        stop_sequences=["END"],
    )
    original = copy.deepcopy(body)
    out = bedrock_body(body, SONNET_45)
    assert body == original  # the client's body is untouched
    assert out == {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": 4096,
        "messages": body["messages"],
        "temperature": 1,
        "system": body["system"],
        "tools": tools,
        "tool_choice": {"type": "auto"},
        "stop_sequences": ["END"],
    }
    assert out["anthropic_version"] == "bedrock-2023-05-31"


def test_betas_are_filtered_into_the_body() -> None:
    assert split_betas([" a, b", "b,c", ""]) == ["a", "b", "c"]
    out = bedrock_body(messages_body(), SONNET_45, [CLAUDE_CODE_BETAS])
    assert out["anthropic_beta"] == [
        "context-1m-2025-08-07",
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
    ]
    assert bedrock_betas(split_betas([CLAUDE_CODE_BETAS]), HAIKU_45) == [
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
    ]  # no 1M context on haiku
    assert bedrock_betas(split_betas([CLAUDE_CODE_BETAS]), OPUS_45) == [
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
        "effort-2025-11-24",
    ]
    assert bedrock_betas(
        ["token-efficient-tools-2025-02-19", "computer-use-2025-01-24", "interleaved-thinking-2025-05-14"],
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
    ) == ["token-efficient-tools-2025-02-19", "computer-use-2025-01-24"]
    # repeated header lines count too; nothing Bedrock knows → no field at all
    out = bedrock_body(
        messages_body(), SONNET_45, ["claude-code-20250219", "interleaved-thinking-2025-05-14"]
    )
    assert out["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    assert "anthropic_beta" not in bedrock_body(messages_body(), SONNET_45, ["claude-code-20250219"])
    assert "anthropic_beta" not in bedrock_body(messages_body(), SONNET_45)


@pytest.mark.parametrize("model", [
    "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4",
    "arn:aws:bedrock:us-west-2:123456789012:custom-model/my-tuned-model/abc",
    "my-company-claude",
])
def test_betas_for_a_model_id_without_version(model: str) -> None:
    """Issue 11 #13: flags Bedrock accepts for every Claude model survive a model id that names no
    version (application inference profile ARNs, custom ids); model-specific ones cannot be placed."""
    assert parse_model(model).version is None
    flags = split_betas([CLAUDE_CODE_BETAS, "token-efficient-tools-2025-02-19,computer-use-2025-01-24"])
    assert bedrock_betas(flags, model) == [
        "interleaved-thinking-2025-05-14", "token-efficient-tools-2025-02-19", "computer-use-2025-01-24"]
    out = bedrock_body(messages_body(context_management={"edits": []}), model, [CLAUDE_CODE_BETAS])
    assert out["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    assert "context_management" not in out       # its beta needs Claude 4.5+, which the id cannot show


def test_beta_gated_fields() -> None:
    edits = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
    body = messages_body(context_management=edits, output_config={"effort": "medium"})
    with_betas = bedrock_body(body, SONNET_45, [CLAUDE_CODE_BETAS])
    assert with_betas["context_management"] == edits
    assert "output_config" not in with_betas  # effort is Opus 4.5-only before 4.6
    bare = bedrock_body(body, SONNET_45)
    assert "context_management" not in bare and "output_config" not in bare
    assert bedrock_body(body, OPUS_45, [CLAUDE_CODE_BETAS])["output_config"] == {"effort": "medium"}
    assert bedrock_body(body, SONNET_46)["output_config"] == {"effort": "medium"}  # GA with adaptive
    schema = {"type": "json_schema", "schema": {"type": "object"}}
    structured = bedrock_body(messages_body(output_config={"effort": "high", "format": schema}), SONNET_45)
    assert structured["output_config"] == {"format": schema}  # structured outputs stay


@pytest.mark.parametrize(
    ("max_tokens", "effort", "budget"),
    [
        (64000, "high", 51200),
        (64000, None, 51200),
        (64000, "medium", 32000),
        (64000, "low", 16000),
        (64000, "max", 60800),
        (64000, "unknown", 51200),
        (10000, "low", 2500),
        (2000, "low", 1024),  # raised to the 1024 minimum
        (1025, "high", 1024),  # the minimum still fits below max_tokens
        (1024, "high", None),
        (500, "max", None),
    ],
)
def test_thinking_budget(max_tokens: int, effort: str | None, budget: int | None) -> None:
    assert thinking_budget(max_tokens, effort) == budget
    if budget is not None:
        assert 1024 <= budget < max_tokens


def test_adaptive_thinking_becomes_enabled_where_unsupported() -> None:
    body = messages_body(max_tokens=64000, thinking={"type": "adaptive"}, output_config={"effort": "medium"})
    assert bedrock_body(body, SONNET_45)["thinking"] == {"type": "enabled", "budget_tokens": 32000}
    assert bedrock_body(messages_body(max_tokens=32000, thinking={"type": "adaptive"}), HAIKU_45)[
        "thinking"
    ] == {"type": "enabled", "budget_tokens": 25600}
    small = bedrock_body(messages_body(max_tokens=1000, thinking={"type": "adaptive"}), SONNET_45)
    assert "thinking" not in small  # no valid budget: no thinking
    assert bedrock_body(body, SONNET_46)["thinking"] == {"type": "adaptive"}
    enabled = {"type": "enabled", "budget_tokens": 2048}
    assert bedrock_body(messages_body(thinking=enabled), SONNET_45)["thinking"] == enabled


def test_adaptive_only_models_get_adaptive_thinking() -> None:
    enabled = bedrock_body(messages_body(thinking={"type": "enabled", "budget_tokens": 2048}), OPUS_47)
    assert enabled["thinking"] == {"type": "adaptive"}
    assert "thinking" not in bedrock_body(messages_body(thinking={"type": "disabled"}), OPUS_47)
    assert bedrock_body(messages_body(thinking={"type": "adaptive"}), OPUS_47)["thinking"] == {
        "type": "adaptive"
    }


def reminder(text: str) -> dict[str, Any]:
    return {"type": "text", "text": f"<system-reminder>\n{text}\n</system-reminder>"}


def test_system_messages_fold_into_user_turns() -> None:
    hello = {
        "role": "user",
        "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
    }
    # Claude Code: the system item follows the user turn
    assert fold_system_messages([hello, {"role": "system", "content": "agents: …"}]) == [
        {"role": "user", "content": [*hello["content"], reminder("agents: …")]}
    ]
    # string content of the user turn becomes a block
    assert fold_system_messages([{"role": "user", "content": "hi"}, {"role": "system", "content": "s"}]) == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, reminder("s")]}
    ]
    tool_use = {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}],
    }
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}
    # between a tool_use and its result: the tool_result stays first
    assert fold_system_messages(
        [hello, tool_use, {"role": "system", "content": [{"type": "text", "text": "s"}]}, result]
    ) == [hello, tool_use, {"role": "user", "content": [*result["content"], reminder("s")]}]
    # first item, and after an assistant turn at the end
    assert fold_system_messages([{"role": "system", "content": "s"}, hello]) == [
        {"role": "user", "content": [*hello["content"], reminder("s")]}
    ]
    assert fold_system_messages([hello, tool_use, {"role": "system", "content": "s"}]) == [
        hello,
        tool_use,
        {"role": "user", "content": [reminder("s")]},
    ]
    plain = [hello, tool_use, result]
    assert fold_system_messages(plain) is plain


def test_claude_code_request_translates() -> None:
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 64000,
        "stream": True,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "system", "content": "Available agent types: …"},
        ],
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "metadata": {"user_id": '{"session_id":"x"}'},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }
    out = bedrock_body(body, SONNET_45, [CLAUDE_CODE_BETAS])
    assert set(out) == {
        "anthropic_version",
        "anthropic_beta",
        "max_tokens",
        "messages",
        "system",
        "thinking",
        "context_management",
    }
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 51200}
    assert [m["role"] for m in out["messages"]] == ["user"]
    assert FakeBedrock.validate(out, SONNET_45) is None  # what the fake Bedrock accepts


# ---------------------------------------------------------------- errors


def test_error_code_parsing_and_mapping() -> None:
    assert (
        aws_error_code("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/")
        == "validationexception"
    )
    assert (
        aws_error_code("com.amazon.coral.service#UnrecognizedClientException")
        == "unrecognizedclientexception"
    )
    assert aws_error_code(None) == ""
    table = {
        "throttlingException": "rate_limit_error",
        "ServiceQuotaExceededException": "rate_limit_error",
        "serviceUnavailableException": "overloaded_error",
        "modelStreamErrorException": "overloaded_error",
        "ModelNotReadyException": "overloaded_error",
        "validationException": "invalid_request_error",
        "InvalidSignatureException": "authentication_error",
        "UnrecognizedClientException": "authentication_error",
        "AccessDeniedException": "permission_error",
        "ResourceNotFoundException": "not_found_error",
        "modelTimeoutException": "api_error",
        "internalServerException": "api_error",
        "ModelErrorException": "api_error",
    }
    for code, expected in table.items():
        assert anthropic_error_type(code) == expected, code
    assert anthropic_error_type("SomethingNew", 429) == "rate_limit_error"
    assert anthropic_error_type(None, 413) == "request_too_large"
    assert anthropic_error_type(None, 418) == "invalid_request_error"
    assert anthropic_error_type(None, 502) == "api_error"
    assert anthropic_error_type(None) == "api_error"


def test_http_error_body_translation() -> None:
    body = translate_error(
        403,
        {"x-amzn-ErrorType": "InvalidSignatureException:http://x/"},
        orjson.dumps({"message": SIGNATURE_MISMATCH}),
    )
    assert orjson.loads(body) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": SIGNATURE_MISMATCH},
    }
    assert orjson.loads(translate_error(503, {}, b"<html>busy</html>")) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "<html>busy</html>"},
    }
    assert (
        orjson.loads(translate_error(500, {}, b""))["error"]["message"] == "Amazon Bedrock answered HTTP 500"
    )


# ---------------------------------------------------------------- event stream → SSE


def stream_bytes(name: str, model: str = SONNET_45) -> bytes:
    scenario = SCENARIOS[name]
    frames = [chunk_frame(event, padding=i % 5 * 3) for i, event in enumerate(scenario.sent_events(model))]
    if scenario.failure:
        frames.append(exception_frame(scenario.failure.exception_type, scenario.failure.message))
    return b"".join(frames)


def translate(data: bytes, cuts: list[int]) -> tuple[bytes, EventStreamTranslator]:
    translator = EventStreamTranslator()
    bounds = [0, *cuts, len(data)]
    out = b"".join(translator.feed(data[a:b]) for a, b in itertools.pairwise(bounds))
    return out, translator


def sse_events(data: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(data) + decoder.flush()


@pytest.mark.parametrize("name", ["simple", "tool_use", "thinking"])
def test_event_stream_becomes_anthropic_sse(name: str) -> None:
    sse, translator = translate(stream_bytes(name), [])
    assert not translator.done and not translator.pending
    events = sse_events(sse)
    expected = SCENARIOS[name].events(SONNET_45)
    assert [orjson.loads(e.data) for e in events] == expected
    assert [e.event for e in events] == [e["type"] for e in expected]
    assert sse.startswith(b'event: message_start\ndata: {"type":"message_start"')
    assert events[-1].event == "message_stop"
    assert "amazon-bedrock-invocationMetrics" in orjson.loads(events[-1].data)  # relayed as sent


def test_frames_split_anywhere_give_the_same_sse() -> None:
    data = stream_bytes("tool_use")
    whole, _ = translate(data, [])
    byte_by_byte, translator = translate(data, list(range(1, len(data))))
    assert byte_by_byte == whole and not translator.pending
    rng = random.Random(4)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 40)))
        assert translate(data, cuts)[0] == whole


@pytest.mark.parametrize(
    ("name", "error_type"), [("throttled", "rate_limit_error"), ("stream_error", "overloaded_error")]
)
def test_exception_frame_becomes_an_error_event(name: str, error_type: str) -> None:
    scenario = SCENARIOS[name]
    assert scenario.failure is not None
    data = stream_bytes(name) + chunk_frame({"type": "message_stop"})  # ignored after the exception
    sse, translator = translate(data, list(range(7, len(data), 13)))
    assert translator.done
    events = sse_events(sse)
    assert [orjson.loads(e.data) for e in events[:-1]] == scenario.sent_events(SONNET_45)
    assert events[-1].event == "error"
    assert orjson.loads(events[-1].data) == {
        "type": "error",
        "error": {"type": error_type, "message": scenario.failure.message},
    }
    observer = MESSAGES.new_stream_observer()
    for event in events:
        observer.feed(event)
    assert observer.error == scenario.failure.message


def test_fake_frames_decode_with_the_anthropic_sdk_bedrock_decoder() -> None:
    """A second opinion on the fake's frames: the official SDK's Bedrock stream decoder (botocore's
    parser with Bedrock's service model) reads the same events from them."""
    from anthropic.lib.bedrock._stream_decoder import AWSEventStreamDecoder

    data = stream_bytes("throttled")
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
    decoded = list(AWSEventStreamDecoder().iter_bytes(iter(pieces)))
    scenario = SCENARIOS["throttled"]
    assert scenario.failure is not None
    assert [orjson.loads(e.data) for e in decoded[:-1]] == scenario.sent_events(SONNET_45)
    assert [e.event for e in decoded[:-1]] == [e["type"] for e in scenario.sent_events(SONNET_45)]
    assert decoded[-1].event == "error"
    assert orjson.loads(decoded[-1].data)["error"] == {
        "type": scenario.failure.exception_type,
        "message": scenario.failure.message,
    }


def test_error_frames_and_other_events() -> None:
    error = encode_frame(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    sse, translator = translate(error, [])
    assert translator.done
    assert orjson.loads(sse_events(sse)[0].data) == {
        "type": "error",
        "error": {"type": "api_error", "message": "boom"},
    }
    initial = encode_frame({":message-type": "event", ":event-type": "initial-response"}, b"{}")
    assert translate(initial, [])[0] == b""


def test_broken_event_stream() -> None:
    frame = bytearray(chunk_frame({"type": "ping"}))
    frame[-1] ^= 0xFF  # message CRC no longer matches
    with pytest.raises(UpstreamError) as info:
        EventStreamTranslator().feed(bytes(frame))
    assert info.value.status == 502
    translator = EventStreamTranslator()
    assert translator.feed(chunk_frame({"type": "ping"})[:-3]) == b""
    assert translator.pending  # a stream ending here was cut short


# ---------------------------------------------------------------- against the fake Bedrock


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeBedrock]:
    server = FakeBedrock(ACCESS_KEY, SECRET_KEY, REGION)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def provider(fake: FakeBedrock) -> AsyncIterator[BedrockProvider]:
    bedrock = BedrockProvider("anthropic", config(base_url=fake.url))
    yield bedrock
    await bedrock.close()


def upstream_request(body: dict[str, Any], betas: str | None = CLAUDE_CODE_BETAS) -> UpstreamRequest:
    headers = CIMultiDict(
        {
            "Content-Type": "application/json",
            "anthropic-version": "2023-06-01",
            "X-Claude-Code-Session-Id": "s-1",
        }
    )
    if betas:
        headers["anthropic-beta"] = betas
    return UpstreamRequest(
        "POST", "v1/messages", "beta=true", headers, orjson.dumps(body), body, bool(body.get("stream"))
    )


async def call(
    provider: BedrockProvider, body: dict[str, Any], betas: str | None = CLAUDE_CODE_BETAS
) -> tuple[int, Any, bytes]:
    response = await provider.send(upstream_request(body, betas))
    try:
        data = b"".join([chunk async for chunk in response.iter_chunks()])
    finally:
        response.close()
    return response.status, response.headers, data


async def test_stream_through_fake_bedrock(fake: FakeBedrock, provider: BedrockProvider) -> None:
    body = messages_body(
        "scenario:tool_use read foo",
        stream=True,
        metadata={"user_id": "u"},
        thinking={"type": "adaptive"},
        max_tokens=8000,
    )
    status, headers, data = await call(provider, body)
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    scenario = SCENARIOS["tool_use"]
    events = sse_events(data)
    assert [orjson.loads(e.data) for e in events] == scenario.events(SONNET_45)
    assert [e.event for e in events] == [orjson.loads(e.data)["type"] for e in events]

    seen = fake.requests[-1]
    assert seen.auth_error is None
    assert seen.operation == "invoke-with-response-stream" and seen.model == SONNET_45
    assert (
        seen.raw_path
        == "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    )
    assert seen.json["anthropic_beta"] == [
        "context-1m-2025-08-07",
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
    ]
    assert seen.json["thinking"] == {"type": "enabled", "budget_tokens": 6400}
    assert "model" not in seen.json and "stream" not in seen.json and "metadata" not in seen.json
    for header in ("anthropic-beta", "anthropic-version", "x-api-key", "x-claude-code-session-id"):
        assert header not in seen.headers  # only signed Bedrock headers go out
    assert seen.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert f"/{REGION}/bedrock/aws4_request" in seen.headers["authorization"]

    # the Messages API reads usage and the tool call from the re-emitted stream as from Anthropic's
    observer = MESSAGES.new_stream_observer()
    findings = [f for e in events for f in observer.feed(e)] + observer.finish()
    usage = [f for f in findings if isinstance(f, Usage)]
    expected = scenario.usage
    assert [
        (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_write_input_tokens)
        for u in usage
    ] == [
        (
            expected.input_tokens,
            expected.output_tokens,
            expected.cache_read_input_tokens,
            expected.cache_write_input_tokens,
        )
    ]
    calls = [f for f in findings if isinstance(f, ToolCall)]
    assert [(c.name, orjson.loads(c.input)) for c in calls] == [("Read", {"file_path": "/tmp/blah/foo"})]


async def test_blocking_through_fake_bedrock(fake: FakeBedrock, provider: BedrockProvider) -> None:
    body = messages_body("scenario:thinking count angels", model="claude-haiku-4-5-20251001")
    status, headers, data = await call(provider, body)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert orjson.loads(data) == SCENARIOS["thinking"].message(HAIKU_45)  # unchanged
    assert orjson.loads(data)["model"] == anthropic_model(HAIKU_45) == "claude-haiku-4-5-20251001"
    seen = fake.requests[-1]
    assert seen.operation == "invoke" and seen.model == HAIKU_45 and seen.auth_error is None
    assert seen.json["anthropic_beta"] == ["interleaved-thinking-2025-05-14", "context-management-2025-06-27"]
    findings = MESSAGES.blocking_findings(orjson.loads(data))
    assert [f.output_tokens for f in findings if isinstance(f, Usage)] == [
        SCENARIOS["thinking"].usage.output_tokens
    ]


async def test_claude_code_like_request_is_accepted(fake: FakeBedrock, provider: BedrockProvider) -> None:
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 64000,
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    {"type": "text", "text": "hi scenario:simple"},
                ],
            },
            {"role": "system", "content": "Available agent types for the Agent tool: …"},
        ],
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "metadata": {"user_id": "{}"},
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }
    status, _, data = await call(provider, body)
    assert status == 200, data
    assert [orjson.loads(e.data) for e in sse_events(data)] == SCENARIOS["simple"].events(SONNET_45)
    assert fake.requests[-1].json["messages"][0]["content"][-1] == reminder(
        "Available agent types for the Agent tool: …"
    )


@pytest.mark.parametrize(
    ("name", "error_type"), [("throttled", "rate_limit_error"), ("stream_error", "overloaded_error")]
)
async def test_exception_mid_stream_through_fake_bedrock(
    provider: BedrockProvider, name: str, error_type: str
) -> None:
    status, _, data = await call(provider, messages_body(f"scenario:{name}", stream=True))
    assert status == 200
    events = sse_events(data)
    scenario = SCENARIOS[name]
    assert scenario.failure is not None
    assert [orjson.loads(e.data) for e in events[:-1]] == scenario.sent_events(SONNET_45)
    assert (events[-1].event, orjson.loads(events[-1].data)) == (
        "error",
        {"type": "error", "error": {"type": error_type, "message": scenario.failure.message}},
    )


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("name", "status", "error_type"),
    [
        ("validation", 400, "invalid_request_error"),
        ("http_throttled", 429, "rate_limit_error"),
        ("unavailable", 503, "overloaded_error"),
    ],
)
async def test_http_errors_become_anthropic_errors(
    provider: BedrockProvider, name: str, status: int, error_type: str, stream: bool
) -> None:
    got, headers, data = await call(provider, messages_body(f"scenario:{name}", stream=stream))
    failure = SCENARIOS[name].http_failure
    assert failure is not None
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert orjson.loads(data) == {"type": "error", "error": {"type": error_type, "message": failure.message}}


async def test_blocking_call_of_a_stream_failure_scenario(provider: BedrockProvider) -> None:
    status, _, data = await call(provider, messages_body("scenario:throttled"))
    assert (status, orjson.loads(data)["error"]["type"]) == (429, "rate_limit_error")


async def test_wrong_secret_is_refused_by_the_signature_check(fake: FakeBedrock) -> None:
    bedrock = BedrockProvider("anthropic", config(base_url=fake.url, secret="not-the-secret"))
    try:
        status, _, data = await call(bedrock, messages_body(stream=True))
    finally:
        await bedrock.close()
    assert status == 403
    assert orjson.loads(data) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": SIGNATURE_MISMATCH},
    }
    assert fake.requests[-1].auth_error == "InvalidSignatureException"


async def test_wrong_region_and_unknown_key_are_refused(fake: FakeBedrock) -> None:
    for cfg, code in [
        (config(base_url=fake.url, region="eu-central-1"), "InvalidSignatureException"),
        (config(base_url=fake.url, key="AKIDUNKNOWN"), "UnrecognizedClientException"),
    ]:
        bedrock = BedrockProvider("anthropic", cfg)
        try:
            status, _, data = await call(bedrock, messages_body())
        finally:
            await bedrock.close()
        assert (status, orjson.loads(data)["error"]["type"]) == (403, "authentication_error")
        assert fake.requests[-1].auth_error == code


def test_fake_rejects_a_tampered_request() -> None:
    fake = FakeBedrock(ACCESS_KEY, SECRET_KEY, REGION)
    url = "http://127.0.0.1:1234/model/m%3A0/invoke"
    headers = sign(
        Credentials(ACCESS_KEY, SECRET_KEY),
        REGION,
        "POST",
        url,
        {"Host": "127.0.0.1:1234", "Content-Type": "application/json"},
        b'{"a":1}',
    )
    assert fake.verify_signature("POST", "/model/m%3A0/invoke", headers, b'{"a":1}') is None
    assert fake.verify_signature("POST", "/model/m%3A0/invoke", headers, b'{"a":2}') == (
        "InvalidSignatureException",
        SIGNATURE_MISMATCH,
    )
    assert fake.verify_signature("POST", "/model/n%3A0/invoke", headers, b'{"a":1}') is not None
    # SigV4 encodes the path as received once more: it must go out exactly as it was signed
    assert fake.verify_signature("POST", "/model/m:0/invoke", headers, b'{"a":1}') is not None


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[pytest.MonkeyPatch]:
    """An AWS credential chain that sees only what the test puts in the environment."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield monkeypatch


async def test_credentials_from_the_aws_chain(fake: FakeBedrock, aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    bedrock = BedrockProvider("anthropic", config(base_url=fake.url, key="", secret=""))
    try:
        status, _, data = await call(bedrock, messages_body())
    finally:
        await bedrock.close()
    assert status == 200, data
    assert fake.requests[-1].auth_error is None


def test_no_credentials_anywhere_is_a_config_error(aws_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no AWS credentials found"):
        BedrockProvider("anthropic", config(key="", secret=""))


async def test_refreshable_credentials_are_refreshed_off_the_loop() -> None:
    fake = FakeBedrock(ACCESS_KEY, SECRET_KEY, REGION, session_token="token-2")
    await fake.start()
    refreshed: list[str] = []

    def refresh() -> dict[str, str]:
        try:
            asyncio.get_running_loop()
            refreshed.append("event loop")
        except RuntimeError:
            refreshed.append("thread")
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return {
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "token": "token-2",
            "expiry_time": expiry.isoformat(),
        }

    expired = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)).isoformat()
    credentials = RefreshableCredentials.create_from_metadata(
        {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "token": "token-1", "expiry_time": expired},
        refresh,
        "test",
    )
    bedrock = BedrockProvider(
        "anthropic", config(base_url=fake.url, key="", secret=""), credentials=credentials
    )
    try:
        for _ in range(2):
            status, _, data = await call(bedrock, messages_body())
            assert status == 200, data
    finally:
        await bedrock.close()
        await fake.stop()
    assert refreshed == ["thread"]  # once: the new credentials last an hour
    assert fake.requests[-1].headers["x-amz-security-token"] == "token-2"


async def test_unreachable_bedrock_is_a_502() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bedrock = BedrockProvider("anthropic", config(base_url=f"http://127.0.0.1:{port}"))
    try:
        with pytest.raises(UpstreamError) as info:
            await bedrock.send(upstream_request(messages_body()))
    finally:
        await bedrock.close()
    assert info.value.status == 502


async def test_fake_bedrock_runs_as_a_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.bedrock",
        "--port",
        "0",
        "--access-key",
        ACCESS_KEY,
        "--secret-key",
        SECRET_KEY,
        "--region",
        REGION,
        stdout=asyncio.subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, ["src", ".", os.environ.get("PYTHONPATH")])),
        },
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        word, port = line.decode().split()
        assert word == "READY"
        bedrock = BedrockProvider("anthropic", config(base_url=f"http://127.0.0.1:{port}"))
        try:
            status, _, data = await call(bedrock, messages_body(stream=True))
        finally:
            await bedrock.close()
        assert status == 200
        assert [orjson.loads(e.data) for e in sse_events(data)] == SCENARIOS["simple"].events(SONNET_45)
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
