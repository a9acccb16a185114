"""The three provider APIs: what they read from requests, blocking answers and streams.

Each ``tests/data/apis/*.txtar`` holds one answer twice (streamed and blocking, in the
providers' exact framing) with the findings both must give.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from aibridge.bridge.apis.base import Api, Finding, Stored, Thought, ToolCall, Usage
from aibridge.bridge.apis.chat_completions import CHAT_COMPLETIONS
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.apis.responses import RESPONSES
from aibridge.bridge.sse import SSEDecoder, SSEEvent

DATA = Path(__file__).parent.parent / "data" / "apis"
APIS: dict[str, Api] = {"messages": MESSAGES, "chat": CHAT_COMPLETIONS, "responses": RESPONSES}
ALL_APIS = [MESSAGES, CHAT_COMPLETIONS, RESPONSES]


# --- helpers ---------------------------------------------------------------------------------

def read_txtar(path: Path) -> dict[str, str]:
    sections: dict[str, str] = {}
    name = None
    for line in path.read_text().splitlines(keepends=True):
        if match := re.fullmatch(r"-- (.+) --\n?", line):
            name = match.group(1)
            sections[name] = ""
        elif name is not None:
            sections[name] += line
    return sections


def case_names() -> list[str]:
    return sorted(p.stem for p in DATA.glob("*.txtar"))


def load(name: str) -> tuple[Api, dict[str, str]]:
    return APIS[name.split("_")[0]], read_txtar(DATA / f"{name}.txtar")


def stream_bytes(sections: dict[str, str]) -> bytes:
    return sections["streaming"].strip("\n").encode() + b"\n\n"


# Set only for injected MCP calls, which the bridge runs itself; an API reader never sets them.
INVOCATION_FIELDS = {"injected": False, "server_url": None, "invocation_error": None, "started_ns": None,
                     "ended_ns": None}


def as_dicts(findings: list[Finding]) -> list[dict[str, Any]]:
    kinds = {Usage: "usage", ToolCall: "tool_call", Thought: "thought"}
    out = []
    for finding in findings:
        if isinstance(finding, Stored):     # the objects an answer made: test_responses_report_their_ids
            continue
        fields = asdict(finding)
        if isinstance(finding, ToolCall):
            assert {k: fields.pop(k) for k in INVOCATION_FIELDS} == INVOCATION_FIELDS
        out.append({"kind": kinds[type(finding)], **fields})
    return out


def chunked(raw: bytes, rng: random.Random, largest: int) -> list[bytes]:
    chunks, at = [], 0
    while at < len(raw):
        size = rng.randint(1, largest)
        chunks.append(raw[at : at + size])
        at += size
    return chunks


def run_stream(api: Api, chunks: list[bytes]) -> tuple[list[Finding], str | None]:
    decoder, observer = SSEDecoder(), api.new_stream_observer()
    findings: list[Finding] = []
    for chunk in chunks:
        for event in decoder.feed(chunk):
            findings.extend(observer.feed(event))
    for event in decoder.flush():
        findings.extend(observer.feed(event))
    findings.extend(observer.finish())
    return findings, observer.error


def events_of(raw: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(raw) + decoder.flush()


def feed_all(api: Api, events: list[SSEEvent], stored: bool = False) -> tuple[list[Finding], str | None]:
    """The findings of these events; the ``Stored`` ones only when asked for (``stored``)."""
    observer = api.new_stream_observer()
    findings = [f for event in events for f in observer.feed(event)] + observer.finish()
    return [f for f in findings if stored or not isinstance(f, Stored)], observer.error


def sse(*events: tuple[str | None, object]) -> list[SSEEvent]:
    return [SSEEvent(name, data if isinstance(data, str) else orjson.dumps(data).decode())
            for name, data in events]


# --- the recorded answers: streaming and blocking agree ----------------------------------------

@pytest.mark.parametrize("name", case_names())
def test_request_info(name: str) -> None:
    api, sections = load(name)
    info = api.request_info(orjson.loads(sections["request"]))
    got = {"model": info.model, "stream": info.stream, "prompt": info.prompt}
    assert got == orjson.loads(sections["info"])


@pytest.mark.parametrize("name", case_names())
def test_blocking_findings(name: str) -> None:
    api, sections = load(name)
    findings = api.blocking_findings(orjson.loads(sections["non-streaming"]))
    assert as_dicts(findings) == orjson.loads(sections["findings"])


@pytest.mark.parametrize("name", case_names())
def test_stream_findings(name: str) -> None:
    api, sections = load(name)
    findings, error = run_stream(api, [stream_bytes(sections)])
    assert error is None
    assert as_dicts(findings) == orjson.loads(sections["findings"])


@pytest.mark.parametrize("name", case_names())
def test_stream_and_blocking_usage_identical(name: str) -> None:
    api, sections = load(name)
    streamed, _ = run_stream(api, [stream_bytes(sections)])
    blocking = api.blocking_findings(orjson.loads(sections["non-streaming"]))
    usages = [f for f in streamed if isinstance(f, Usage)]
    assert len(usages) == 1
    assert usages == [f for f in blocking if isinstance(f, Usage)]


@pytest.mark.parametrize("name", case_names())
@pytest.mark.parametrize("seed", range(8))
def test_stream_chunking_does_not_matter(name: str, seed: int) -> None:
    api, sections = load(name)
    raw = stream_bytes(sections)
    if seed % 2:                                       # some servers end lines with CRLF
        raw = raw.replace(b"\n", b"\r\n")
    rng = random.Random(seed)
    whole, _ = run_stream(api, [raw])
    assert run_stream(api, chunked(raw, rng, largest=rng.choice([2, 7, 64])))[0] == whole


@pytest.mark.parametrize("name", case_names())
def test_events_without_event_lines(name: str) -> None:
    """A gateway that sends only ``data:`` lines: the type inside the data is enough."""
    api, sections = load(name)
    events = events_of(stream_bytes(sections))
    nameless = [SSEEvent(None, e.data) for e in events]
    assert feed_all(api, nameless) == feed_all(api, events)


@pytest.mark.parametrize("name", case_names())
def test_truncated_streams_emit_each_finding_once(name: str) -> None:
    """Cut the stream after every event: finish() completes it, never repeating a finding."""
    api, sections = load(name)
    events = events_of(stream_bytes(sections))
    complete = as_dicts(feed_all(api, events)[0])
    for cut in range(len(events) + 1):
        findings = as_dicts(feed_all(api, events[:cut])[0])
        assert sum(f["kind"] == "usage" for f in findings) <= 1
        call_ids = [f["call_id"] for f in findings if f["kind"] == "tool_call"]
        assert len(call_ids) == len(set(call_ids))
        assert len(findings) <= len(complete)


@pytest.mark.parametrize("name", case_names())
def test_finish_after_complete_stream_adds_nothing(name: str) -> None:
    api, sections = load(name)
    observer = api.new_stream_observer()
    for event in events_of(stream_bytes(sections)):
        observer.feed(event)
    assert observer.finish() == []
    assert observer.finish() == []


# --- prompts ---------------------------------------------------------------------------------

def test_messages_prompt_skips_claude_codes_trailing_system_message() -> None:
    body = {"messages": [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "<reminder/>"},
                                     {"type": "text", "text": "hi"}]},
        {"role": "system", "content": "Available agent types"},
    ]}
    assert MESSAGES.request_info(body).prompt == "hi"


def test_messages_prompt_ignores_tool_results() -> None:
    mixed = [{"type": "tool_result", "tool_use_id": "t", "content": "out"}, {"type": "text", "text": "go on"},
             {"type": "tool_result", "tool_use_id": "u", "content": "more"}]
    assert MESSAGES.request_info({"messages": [{"role": "user", "content": mixed}]}).prompt == "go on"
    only_results = [{"type": "tool_result", "tool_use_id": "t", "content": "out"}]
    body = {"messages": [{"role": "user", "content": "run it"}, {"role": "user", "content": only_results}]}
    assert MESSAGES.request_info(body).prompt is None


@pytest.mark.parametrize("api", ALL_APIS, ids=lambda a: a.name)
@pytest.mark.parametrize("body", [
    {},
    {"model": 5, "stream": "true", "messages": "hi", "input": 7},
    {"messages": [None, 3, "user", {"role": "user"}], "input": [None, {"role": "user"}]},
    {"messages": [{"role": "user", "content": [None, 1, {"type": "text", "text": 5}, {"type": "text"}]}],
     "input": [{"role": "user", "content": [None, {"type": "input_text", "text": None}]}]},
    {"messages": [{"role": "user", "content": {"text": "x"}}], "input": [{"role": "user", "content": 4}]},
])
def test_request_info_survives_odd_shapes(api: Api, body: dict[str, Any]) -> None:
    info = api.request_info(body)
    assert info.model == "" and info.stream is False and info.prompt is None


def test_chat_prompt() -> None:
    body = {"model": "m", "stream": True, "messages": [
        {"role": "user", "content": "earlier"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "tool_calls": []},
        {"role": "tool", "tool_call_id": "c", "content": "result"},
    ]}
    info = CHAT_COMPLETIONS.request_info(body)
    assert (info.model, info.stream, info.prompt) == ("m", True, "a")


def test_responses_prompt() -> None:
    assert RESPONSES.request_info({"input": "hi"}).prompt == "hi"
    items: list[Any] = [
        {"role": "user", "content": "shorthand item"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "ok"},
    ]
    assert RESPONSES.request_info({"input": items}).prompt == "shorthand item"
    items.append({"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "one"}, {"type": "input_file", "file_id": "f"},
        {"type": "input_text", "text": "two"}]})
    assert RESPONSES.request_info({"input": items}).prompt == "one\ntwo"
    images_only = [{"role": "user", "content": [{"type": "input_image"}]}]
    assert RESPONSES.request_info({"input": images_only}).prompt is None


# --- prepare_upstream --------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "expected"), [
    (None, {"include_usage": True}),
    ({"include_usage": False, "include_obfuscation": False},
     {"include_usage": True, "include_obfuscation": False}),
    ("bogus", {"include_usage": True}),
])
def test_chat_stream_asks_for_usage(options: object, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {"model": "m", "stream": True, "messages": [], "custom_field": {"keep": 1}}
    if options is not None:
        body["stream_options"] = options
    assert CHAT_COMPLETIONS.prepare_upstream(body) is True
    assert body["stream_options"] == expected
    assert body["custom_field"] == {"keep": 1}


@pytest.mark.parametrize("body", [
    {"stream": True, "stream_options": {"include_usage": True}},
    {"stream": False},
    {"messages": []},
])
def test_chat_leaves_body_alone_when_usage_comes_anyway(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    assert CHAT_COMPLETIONS.prepare_upstream(body) is False
    assert body == before


@pytest.mark.parametrize("api", [MESSAGES, RESPONSES], ids=lambda a: a.name)
def test_other_apis_never_change_the_body(api: Api) -> None:
    body = {"model": "m", "stream": True, "messages": [{"role": "developer", "content": "x"}], "unknown": [1]}
    before = copy.deepcopy(body)
    assert api.prepare_upstream(body) is False
    assert body == before


# --- Anthropic usage: cumulative counts, one Usage per message ---------------------------------

START = ("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": {
    "input_tokens": 18, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100,
    "output_tokens": 1}}})
STOP = ("message_stop", {"type": "message_stop"})


def delta(usage: dict[str, Any]) -> tuple[str, object]:
    return "message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}


def test_anthropic_cumulative_output_is_not_added_up() -> None:
    events = sse(START, delta({"output_tokens": 10}), delta({"output_tokens": 30}), STOP)
    findings, _ = feed_all(MESSAGES, events)
    assert findings == [Usage("msg_1", 18, 30, 100, 5)]


def test_anthropic_repeated_input_in_message_delta_is_counted_once() -> None:
    repeated = {"input_tokens": 18, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100,
                "output_tokens": 30}
    findings, _ = feed_all(MESSAGES, sse(START, delta(repeated), STOP))
    assert findings == [Usage("msg_1", 18, 30, 100, 5)]


def test_anthropic_usage_without_message_delta_is_emitted_at_finish() -> None:
    observer = MESSAGES.new_stream_observer()
    assert observer.feed(sse(START)[0]) == []
    assert observer.finish() == [Usage("msg_1", 18, 1, 100, 5)]
    assert observer.finish() == []


def test_anthropic_two_messages_in_one_stream_give_two_usages() -> None:
    second = ("message_start", {"type": "message_start",
                                "message": {"id": "msg_2", "usage": {"input_tokens": 7}}})
    events = sse(START, delta({"output_tokens": 3}), second, delta({"output_tokens": 4}))
    findings, _ = feed_all(MESSAGES, events)
    assert findings == [Usage("msg_1", 18, 3, 100, 5), Usage("msg_2", 7, 4)]


def test_anthropic_redacted_thinking_is_skipped() -> None:
    body = {"id": "msg_r", "content": [{"type": "redacted_thinking", "data": "abc"},
                                       {"type": "text", "text": "x"}]}
    assert MESSAGES.blocking_findings(body) == []


def test_anthropic_truncated_tool_use_is_recorded_as_incomplete() -> None:
    tool = ("content_block_start", {"type": "content_block_start", "index": 0,
                                    "content_block": {"type": "tool_use", "id": "toolu_x", "name": "Bash"}})
    part = ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "input_json_delta", "partial_json": '{"command": "l'}})
    findings, _ = feed_all(MESSAGES, sse(START, tool, part))
    assert findings == [
        ToolCall("msg_1", "toolu_x", "Bash", '{"command": "l', {"incomplete": True}),
        Usage("msg_1", 18, 1, 100, 5),
    ]


# --- chat completions streams ------------------------------------------------------------------

def chunk(choices: list[Any], usage: object = None, id_: str = "chatcmpl-1") -> tuple[None, object]:
    return None, {"id": id_, "object": "chat.completion.chunk", "choices": choices, "usage": usage}


def test_chat_running_usage_in_every_chunk_is_counted_once() -> None:
    events = sse(
        chunk([{"index": 0, "delta": {"content": "a"}}], {"prompt_tokens": 10, "completion_tokens": 1}),
        chunk([{"index": 0, "delta": {"content": "b"}}], {"prompt_tokens": 10, "completion_tokens": 2}),
        chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}],
              {"prompt_tokens": 10, "completion_tokens": 3}),
        (None, "[DONE]"),
    )
    assert feed_all(CHAT_COMPLETIONS, events)[0] == [Usage("chatcmpl-1", 10, 3)]


def test_chat_parallel_calls_sharing_index_zero() -> None:
    """Some compatible servers send each parallel call whole, all at index 0."""
    def call(id_: str, name: str, arguments: str) -> list[Any]:
        function = {"name": name, "arguments": arguments}
        return [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": id_, "function": function}]}}]

    events = sse(
        chunk(call("a", "f", "{}")),
        chunk(call("b", "g", "[]")),
        chunk([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]),
    )
    assert feed_all(CHAT_COMPLETIONS, events)[0] == [
        ToolCall("chatcmpl-1", "a", "f", "{}"), ToolCall("chatcmpl-1", "b", "g", "[]")]


def test_chat_tool_calls_never_closed_are_emitted_at_finish() -> None:
    events = sse(chunk([{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "function": {"name": "read", "arguments": '{"pa'}}]}}]))
    assert feed_all(CHAT_COMPLETIONS, events)[0] == [
        ToolCall("chatcmpl-1", "call_1", "read", '{"pa', {"incomplete": True})]


def test_chat_custom_tool_call_keeps_raw_input() -> None:
    body = {"id": "c1", "choices": [{"message": {"tool_calls": [
        {"id": "call_c", "type": "custom", "custom": {"name": "apply_patch", "input": "*** Begin Patch"}}]}}]}
    expected = [ToolCall("c1", "call_c", "apply_patch", "*** Begin Patch")]
    assert CHAT_COMPLETIONS.blocking_findings(body) == expected


def test_chat_usage_details_go_to_metadata() -> None:
    body = {"id": "c2", "usage": {"prompt_tokens": 50, "completion_tokens": 9,
                                  "prompt_tokens_details": {"cached_tokens": 20, "audio_tokens": 3},
                                  "completion_tokens_details": {"reasoning_tokens": 4, "audio_tokens": 0,
                                                                "accepted_prediction_tokens": 2}}}
    assert CHAT_COMPLETIONS.blocking_findings(body) == [Usage("c2", 30, 9, 20, 0, {
        "prompt_audio": 3, "completion_reasoning": 4, "completion_accepted_prediction": 2})]


# --- Responses streams -------------------------------------------------------------------------

FUNCTION_CALL = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f",
                 "arguments": '{"a":1}'}
RESPONSE_USAGE = {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 5,
                  "output_tokens_details": {"reasoning_tokens": 2}}


def final(kind: str, **response: Any) -> tuple[str, object]:
    return kind, {"type": kind, "response": {"id": "resp_1", **response}}


def test_responses_completed_without_item_events_still_records_items() -> None:
    completed = final("response.completed", status="completed", output=[FUNCTION_CALL], usage=RESPONSE_USAGE)
    events = sse(completed)
    assert feed_all(RESPONSES, events)[0] == [
        ToolCall("resp_1", "call_1", "f", '{"a":1}'), Usage("resp_1", 20, 5, 10, 0, {"output_reasoning": 2})]


def test_responses_incomplete_carries_usage() -> None:
    events = sse(final("response.incomplete", status="incomplete", output=[], usage=RESPONSE_USAGE,
                       incomplete_details={"reason": "max_output_tokens"}))
    findings, error = feed_all(RESPONSES, events)
    assert findings == [Usage("resp_1", 20, 5, 10, 0, {"output_reasoning": 2})]
    assert error is None


def test_responses_truncated_call_and_summary_are_emitted_at_finish() -> None:
    events = sse(
        ("response.created", {"type": "response.created", "response": {"id": "resp_1"}}),
        ("response.reasoning_summary_text.delta", {
            "type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "summary_index": 0,
            "delta": "Thinking"}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 1,
                                        "item": {**FUNCTION_CALL, "arguments": ""}}),
        ("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                    "item_id": "fc_1", "delta": '{"a"'}),
    )
    assert feed_all(RESPONSES, events)[0] == [
        ToolCall("resp_1", "call_1", "f", '{"a"', {"incomplete": True}),
        Thought("Thinking", {"source": "reasoning_summary", "incomplete": True}),
    ]


def test_responses_commentary_message_is_a_thought() -> None:
    body = {"id": "resp_c", "output": [
        {"type": "message", "role": "assistant", "phase": "commentary",
         "content": [{"type": "output_text", "text": "Looking at the tests first."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
    ]}
    expected = [Thought("Looking at the tests first.", {"source": "commentary"})]
    assert RESPONSES.blocking_findings(body) == [Stored("response", "resp_c"), *expected]


# --- errors ------------------------------------------------------------------------------------

def test_anthropic_stream_error() -> None:
    events = sse(
        ("message_start", {"type": "message_start", "message": {"id": "msg_e", "usage": {
            "input_tokens": 18, "output_tokens": 1, "service_tier": "standard"}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text"}}),
        ("ping", '{"type": "ping"}'),
        ("error", '{"type": "error", "error": {"type": "api_error", "message": "Overloaded"}}'),
    )
    findings, error = feed_all(MESSAGES, events)
    assert error == "Overloaded"
    assert findings == [Usage("msg_e", 18, 1, metadata={"service_tier": "standard"})]


def test_chat_stream_error() -> None:
    events = sse(
        chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]),
        chunk([{"index": 0, "delta": {"content": "The"}, "finish_reason": None}]),
        (None, '{"error": {"message": "The server had an error", "type": "server_error"}}'),
    )
    assert feed_all(CHAT_COMPLETIONS, events) == ([], "The server had an error")


@pytest.mark.parametrize(("event", "message"), [
    (("error", {"type": "error", "code": "ERR_X", "message": "Something went wrong", "param": None}),
     "Something went wrong"),
    (("error", {"type": "error", "error": {"type": "server_error", "message": "nested"}}), "nested"),
    (final("response.failed", status="failed", output=[], usage=None,
           error={"code": "server_error", "message": "The model failed to generate a response."}),
     "The model failed to generate a response."),
])
def test_responses_stream_errors(event: tuple[str, object], message: str) -> None:
    start = ("response.created", {"type": "response.created",
                                  "response": {"id": "resp_1", "status": "in_progress"}})
    text = ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hello"})
    assert feed_all(RESPONSES, sse(start, text, event)) == ([], message)


@pytest.mark.parametrize("api", ALL_APIS, ids=lambda a: a.name)
def test_own_stream_error_event_is_understood(api: Api) -> None:
    """What the bridge sends a streaming client parses as that provider's stream error."""
    raw = api.stream_error_event("upstream timed out")
    assert raw.endswith(b"\n\n")
    findings, error = feed_all(api, events_of(raw))
    assert (findings, error) == ([], "upstream timed out")


def test_stream_error_event_shapes() -> None:
    assert MESSAGES.stream_error_event("boom") == (
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"boom"}}\n\n')
    assert CHAT_COMPLETIONS.stream_error_event("boom") == (
        b'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n')
    event = events_of(RESPONSES.stream_error_event("boom"))[0]
    assert event.event == "response.failed"
    body = orjson.loads(event.data)
    assert body["type"] == "response.failed"
    assert body["response"]["status"] == "failed"
    assert body["response"]["error"] == {"code": "server_error", "message": "boom"}


@pytest.mark.parametrize(("status", "openai_type", "anthropic_type"), [
    (400, "invalid_request_error", "invalid_request_error"),
    (401, "authentication_error", "authentication_error"),
    (403, "permission_error", "permission_error"),
    (404, "not_found_error", "not_found_error"),
    (413, "invalid_request_error", "request_too_large"),
    (429, "rate_limit_error", "rate_limit_error"),
    (500, "server_error", "api_error"),
    (502, "server_error", "api_error"),
    (503, "server_error", "overloaded_error"),
    (504, "server_error", "api_error"),
    (529, "server_error", "overloaded_error"),
])
def test_error_bodies(status: int, openai_type: str, anthropic_type: str) -> None:
    expected = {"error": {"message": "no", "type": openai_type, "param": None, "code": None}}
    assert CHAT_COMPLETIONS.error_body(status, "no") == expected
    assert RESPONSES.error_body(status, "no") == expected
    anthropic = {"type": "error", "error": {"type": anthropic_type, "message": "no"}}
    assert MESSAGES.error_body(status, "no") == anthropic


# --- robustness --------------------------------------------------------------------------------

GARBAGE = ["", "{not json", "[1, 2]", "null", '"text"', "[DONE]", '{"type": 5}', "\x00"]
ODD_EVENTS = [
    ("message_start", {"type": "message_start", "message": "msg"}),
    ("message_start", {"type": "message_start", "message": {"usage": [1]}}),
    ("content_block_start", {"type": "content_block_start", "index": "a", "content_block": None}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "tool_use"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": "x"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "input_json_delta"}}),
    ("content_block_stop", {"type": "content_block_stop"}),
    ("message_delta", {"type": "message_delta", "usage": {"output_tokens": "many", "input_tokens": True}}),
    ("error", {"type": "error", "error": None}),
    (None, {"choices": "x", "usage": {"prompt_tokens": None}}),
    (None, {"choices": [None, {"delta": {"tool_calls": [None, {"index": "z", "function": 3}]}}]}),
    (None, {"choices": [{"delta": {"tool_calls": "x", "reasoning_content": 4}, "finish_reason": "stop"}]}),
    ("response.output_item.added", {"type": "response.output_item.added", "item": ["x"]}),
    ("response.output_item.done", {"type": "response.output_item.done",
                                   "item": {"type": "reasoning", "summary": 1}}),
    ("response.function_call_arguments.delta", {"item_id": None, "delta": None}),
    ("response.reasoning_summary_text.delta", {"item_id": 1, "summary_index": "x", "delta": None}),
    ("response.completed", {"type": "response.completed", "response": {"output": [1, None], "usage": "x"}}),
    ("response.failed", {"type": "response.failed", "response": None}),
]


@pytest.mark.parametrize("api", ALL_APIS, ids=lambda a: a.name)
def test_malformed_events_never_raise(api: Api) -> None:
    observer = api.new_stream_observer()
    for data in GARBAGE:
        for name in (None, "message_start", "content_block_delta", "response.completed", "error"):
            observer.feed(SSEEvent(name, data))
    for event in sse(*ODD_EVENTS):
        observer.feed(event)
    observer.finish()


@pytest.mark.parametrize("api", ALL_APIS, ids=lambda a: a.name)
@pytest.mark.parametrize("body", [
    {}, {"id": 5, "content": "x", "choices": "x", "output": "x", "usage": []},
    {"content": [None, {"type": "tool_use", "input": {1, 2}}], "choices": [None, {"message": []}],
     "output": [None, {"type": "function_call"}], "usage": {"input_tokens": "9", "prompt_tokens": 1.5}},
])
def test_odd_blocking_bodies_never_raise(api: Api, body: dict[str, Any]) -> None:
    for finding in api.blocking_findings(body):
        assert isinstance(finding, Usage | ToolCall | Thought)


def test_responses_report_their_ids() -> None:
    """The id of every response made, once, as soon as the answer tells it (issue 20, 1.2)."""
    _, sections = load("responses_function_call")
    blocking = RESPONSES.blocking_findings(orjson.loads(sections["non-streaming"]))
    assert [f for f in blocking if isinstance(f, Stored)] == [Stored("response", "resp_F6")]
    findings, _ = run_stream(RESPONSES, [stream_bytes(sections)])
    stored = [f for f in findings if isinstance(f, Stored)]
    assert len(stored) == 1 and stored[0].kind == "response" and stored[0].id.startswith("resp_")
    first, _ = feed_all(RESPONSES, sse(("response.created", {"type": "response.created",
                                                             "response": {"id": "resp_early"}})), stored=True)
    assert first == [Stored("response", "resp_early")]


def test_responses_the_upstream_does_not_keep_are_not_reported() -> None:
    """``store: false`` (Codex): no later request can name the response, so it needs no owner row."""
    _, sections = load("responses_function_call")
    body = {**orjson.loads(sections["non-streaming"]), "store": False}
    assert not [f for f in RESPONSES.blocking_findings(body) if isinstance(f, Stored)]
    assert any(isinstance(f, Usage) for f in RESPONSES.blocking_findings(body))
    for event in ("response.created", "response.completed"):
        found, _ = feed_all(RESPONSES, sse((event, {"type": event, "response": {"id": "resp_x", "store": False}})),
                            stored=True)
        assert found == []


def test_responses_request_names_what_it_continues() -> None:
    info = RESPONSES.request_info({"model": "m", "input": "x", "previous_response_id": "resp_1",
                                   "conversation": {"id": "conv_2"}})
    assert info.references == (("response", "resp_1"), ("conversation", "conv_2"))
    assert RESPONSES.request_info({"model": "m", "input": "x", "conversation": "conv_3"}).references == (
        ("conversation", "conv_3"),)
    assert RESPONSES.request_info({"model": "m", "input": "x"}).references == ()
