"""OpenAI /v1/chat/completions: prompt, usage, tool calls and reasoning, blocking and streamed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from aibridge.bridge.apis import openai_common
from aibridge.bridge.apis.base import Finding, StreamObserver, Thought, ToolCall, Usage
from aibridge.bridge.apis.common import (
    ApiAdapter,
    ObserverBase,
    as_dict,
    as_int,
    as_list,
    as_str,
    counts,
    error_message,
    loads_object,
    request_stream,
)
from aibridge.bridge.sse import SSEEvent, encode_event


def _usage(response_id: str, usage: dict[str, Any]) -> Usage:
    prompt = as_dict(usage.get("prompt_tokens_details"))
    completion = as_dict(usage.get("completion_tokens_details"))
    fresh, cached, written = openai_common.split_cached(usage.get("prompt_tokens"), prompt)
    return Usage(
        response_id=response_id,
        input_tokens=fresh,
        output_tokens=as_int(usage.get("completion_tokens")),
        cache_read_input_tokens=cached,
        cache_write_input_tokens=written,
        metadata=counts(
            prompt_audio=prompt.get("audio_tokens"),
            completion_reasoning=completion.get("reasoning_tokens"),
            completion_audio=completion.get("audio_tokens"),
            completion_accepted_prediction=completion.get("accepted_prediction_tokens"),
            completion_rejected_prediction=completion.get("rejected_prediction_tokens"),
        ),
    )


def _reasoning(message: dict[str, Any]) -> str:
    # Not OpenAI's own API: DeepSeek-style gateways send reasoning_content, OpenRouter reasoning.
    return as_str(message.get("reasoning_content")) or as_str(message.get("reasoning"))


def _reasoning_thought(text: str) -> Thought:
    return Thought(text, {"source": "reasoning_content"})


def _tool_call(response_id: str, call: object) -> ToolCall | None:
    if not isinstance(call, dict):
        return None
    if isinstance(custom := call.get("custom"), dict):    # custom tools take raw text input
        name, text = as_str(custom.get("name")), as_str(custom.get("input"))
    else:
        function = as_dict(call.get("function"))
        name, text = as_str(function.get("name")), as_str(function.get("arguments"))
    return ToolCall(response_id, as_str(call.get("id")), name, text)


def _blocking_findings(body: dict[str, Any]) -> list[Finding]:
    response_id = as_str(body.get("id"))
    findings: list[Finding] = []
    for choice in as_list(body.get("choices")):
        message = as_dict(as_dict(choice).get("message"))
        if text := _reasoning(message):
            findings.append(_reasoning_thought(text))
        calls = as_list(message.get("tool_calls"))
        findings.extend(c for call in calls if (c := _tool_call(response_id, call)))
    usage = body.get("usage")
    if isinstance(usage, dict):
        findings.append(_usage(response_id, usage))
    return findings


@dataclass(slots=True)
class _PendingCall:
    call_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)

    def add(self, delta: dict[str, Any]) -> None:
        part = as_dict(delta.get("custom") or delta.get("function"))
        self.name = self.name or as_str(part.get("name"))
        self.parts.append(as_str(part.get("arguments")) or as_str(part.get("input")))

    def tool_call(self, response_id: str, complete: bool) -> ToolCall:
        metadata: dict[str, Any] = {} if complete else {"incomplete": True}
        return ToolCall(response_id, self.call_id, self.name, "".join(self.parts), metadata)


@dataclass(slots=True)
class _Choice:
    """What one choice has streamed so far of the findings it completes at its finish_reason."""

    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, _PendingCall] = field(default_factory=dict)
    closed: list[_PendingCall] = field(default_factory=list)

    def add_call(self, delta: dict[str, Any]) -> None:
        index = as_int(delta.get("index"))
        call_id = as_str(delta.get("id"))
        pending = self.calls.get(index)
        # Some gateways reuse index 0 for parallel calls; a new id means a new call.
        if pending is not None and call_id and pending.call_id and call_id != pending.call_id:
            self.closed.append(pending)
            pending = None
        if pending is None:
            pending = self.calls[index] = _PendingCall(call_id)
        pending.call_id = pending.call_id or call_id
        pending.add(delta)

    def findings(self, response_id: str, complete: bool) -> list[Finding]:
        findings: list[Finding] = []
        if text := "".join(self.reasoning):
            findings.append(_reasoning_thought(text))
        calls = self.closed + [self.calls[i] for i in sorted(self.calls)]
        findings.extend(call.tool_call(response_id, complete) for call in calls)
        return findings


class _ChatObserver(ObserverBase):
    __slots__ = ("_choices", "_id", "_usage")

    def __init__(self) -> None:
        super().__init__()
        self._id = ""
        self._usage: dict[str, Any] | None = None      # latest usage seen, emitted once at the end
        self._choices: dict[int, _Choice] = {}

    def feed(self, event: SSEEvent) -> list[Finding]:
        data = event.data
        if data == "[DONE]":
            return self._flush_usage()
        if self._is_plain_delta(data):
            return []
        chunk = loads_object(data)
        if chunk is None:
            return []
        if "error" in chunk and not chunk.get("choices"):
            self._error = error_message(chunk.get("error"), "upstream stream error")
            return []
        self._id = self._id or as_str(chunk.get("id"))
        findings: list[Finding] = []
        for choice in as_list(chunk.get("choices")):
            if isinstance(choice, dict):
                findings.extend(self._choice(choice))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            # Some servers repeat running totals in every chunk: keep the last, count it once.
            self._usage = usage
        return findings

    def finish(self) -> list[Finding]:
        findings: list[Finding] = []
        for index in sorted(self._choices):
            findings.extend(self._choices[index].findings(self._id, False))
        self._choices.clear()
        return findings + self._flush_usage()

    def skips(self, raw: bytes) -> bool:
        """The raw form of ``_is_plain_delta``, for one event or several (the checks are
        substrings: what holds for the whole holds for each event). Kept apart from it: feeding
        a str through this (encode, two counts) made the turn loop's per-event check ~30% dearer."""
        return (
            bool(self._id)
            and not self._choices
            and b"tool_calls" not in raw
            and b"reasoning" not in raw
            and b'"error"' not in raw
            and raw.count(b'"usage"') == raw.count(b'"usage":null')
        )

    skips_all = skips

    def _is_plain_delta(self, data: str) -> bool:
        """A text delta carries nothing to record; recognise it without parsing. Any doubt
        (a word in the text, spacing we do not expect) only costs a parse."""
        return (
            bool(self._id)
            and not self._choices
            and "tool_calls" not in data
            and "reasoning" not in data
            and '"error"' not in data
            and ('"usage"' not in data or '"usage":null' in data)
        )

    def _choice(self, choice: dict[str, Any]) -> list[Finding]:
        index = as_int(choice.get("index"))
        delta = as_dict(choice.get("delta"))
        reasoning = _reasoning(delta)
        tool_calls = as_list(delta.get("tool_calls"))
        if reasoning or tool_calls:
            state = self._choices.setdefault(index, _Choice())
            if reasoning:
                state.reasoning.append(reasoning)
            for call in tool_calls:
                if isinstance(call, dict):
                    state.add_call(call)
        if choice.get("finish_reason") and (done := self._choices.pop(index, None)):
            return done.findings(self._id, True)
        return []

    def _flush_usage(self) -> list[Finding]:
        if self._usage is None:
            return []
        usage, self._usage = self._usage, None
        return [_usage(self._id, usage)]


class ChatCompletionsApi(ApiAdapter):
    name = "chat_completions"

    def prepare_upstream(self, body: dict[str, Any]) -> bool:
        """Ask for usage in the stream (a streamed answer carries none unless asked)."""
        if not request_stream(body):
            return False
        options = body.get("stream_options")
        if isinstance(options, dict):
            if options.get("include_usage") is True:
                return False
            body["stream_options"] = {**options, "include_usage": True}
        else:
            body["stream_options"] = {"include_usage": True}
        return True

    def blocking_findings(self, body: dict[str, Any]) -> list[Finding]:
        return _blocking_findings(body)

    def new_stream_observer(self) -> StreamObserver:
        return _ChatObserver()

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return openai_common.error_body(status, message)

    def stream_error_event(self, message: str) -> bytes:
        return encode_event(orjson.dumps({"error": openai_common.error_object(message, "server_error")}))


CHAT_COMPLETIONS = ChatCompletionsApi()
