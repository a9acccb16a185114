"""OpenAI /v1/responses: prompt, usage, tool calls and reasoning summaries, blocking and streamed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from aibridge.bridge.apis import openai_common
from aibridge.bridge.apis.base import Finding, RequestInfo, Stored, StreamObserver, Thought, ToolCall, Usage
from aibridge.bridge.apis.common import (
    ApiAdapter,
    ObserverBase,
    answer_findings,
    as_dict,
    as_int,
    as_list,
    as_str,
    counts,
    dumps_text,
    error_message,
    event_name,
    last_user_message,
    loads_object,
)
from aibridge.bridge.sse import SSEEvent, encode_event

_CALL_ITEMS = frozenset({"function_call", "custom_tool_call"})
_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")
_DELTA_EVENTS = ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta")
_DELTA_NAMES = frozenset(kind.encode() for kind in _DELTA_EVENTS)


def _prompt(value: object) -> str | None:
    if isinstance(value, str):
        return value
    item = last_user_message(value)
    if item is None:
        return None
    content = item.get("content")
    if isinstance(content, str):
        return content
    texts = [
        part["text"]
        for part in as_list(content)
        if isinstance(part, dict) and part.get("type") == "input_text" and isinstance(part.get("text"), str)
    ]
    return "\n".join(texts) if texts else None


def _usage(response_id: str, usage: dict[str, Any]) -> Usage:
    fresh, cached, written = openai_common.split_cached(usage.get("input_tokens"),
                                                        as_dict(usage.get("input_tokens_details")))
    return Usage(
        response_id=response_id,
        input_tokens=fresh,
        output_tokens=as_int(usage.get("output_tokens")),
        cache_read_input_tokens=cached,
        cache_write_input_tokens=written,
        metadata=counts(output_reasoning=as_dict(usage.get("output_tokens_details")).get("reasoning_tokens")),
    )


def _texts(parts: object, part_type: str) -> str:
    return "\n".join(
        text
        for part in as_list(parts)
        if isinstance(part, dict) and part.get("type") == part_type and (text := as_str(part.get("text")))
    )


def _thought(item: dict[str, Any]) -> Thought | None:
    if item.get("type") == "reasoning":
        if text := _texts(item.get("summary"), "summary_text"):
            return Thought(text, {"source": "reasoning_summary"})
        # open-weight models behind compatible gateways send the reasoning itself
        if text := _texts(item.get("content"), "reasoning_text"):
            return Thought(text, {"source": "reasoning_text"})
    # the model sometimes narrates its plan as a "commentary" message instead of a summary
    elif item.get("type") == "message" and item.get("phase") == "commentary" and (
        text := _texts(item.get("content"), "output_text")
    ):
        return Thought(text, {"source": "commentary"})
    return None


def _tool_call(response_id: str, item: dict[str, Any]) -> ToolCall | None:
    kind = item.get("type")
    call_id, name = as_str(item.get("call_id")), as_str(item.get("name"))
    if kind == "function_call":
        return ToolCall(response_id, call_id, name, as_str(item.get("arguments")))
    if kind == "custom_tool_call":                      # free-form tools: raw text, not JSON
        return ToolCall(response_id, call_id, name, as_str(item.get("input")))
    if kind == "local_shell_call":
        return ToolCall(response_id, call_id, "local_shell", dumps_text(item.get("action", {})))
    return None


def _item_finding(response_id: str, item: object) -> Finding | None:
    if not isinstance(item, dict):
        return None
    return _tool_call(response_id, item) or _thought(item)


def _item_key(item: dict[str, Any], index: int) -> str:
    return as_str(item.get("id")) or as_str(item.get("call_id")) or f"#{index}"


@dataclass(slots=True)
class _PendingCall:
    """A call item between output_item.added and output_item.done, for a stream cut short."""

    item: dict[str, Any]
    parts: list[str] = field(default_factory=list)

    def finding(self, response_id: str) -> ToolCall | None:
        text_key = "arguments" if self.item.get("type") == "function_call" else "input"
        call = _tool_call(response_id, {**self.item, text_key: "".join(self.parts)})
        if call is not None:
            call.metadata["incomplete"] = True
        return call


class _ResponsesObserver(ObserverBase):
    __slots__ = ("_calls", "_emitted", "_id", "_summaries", "_usage_ids")

    def __init__(self) -> None:
        super().__init__()
        self._id = ""
        self._emitted: set[str] = set()                       # keys of the output items recorded
        self._calls: dict[str, _PendingCall] = {}             # by item id
        self._summaries: dict[str, dict[int, str]] = {}       # item id → summary index → text
        self._usage_ids: set[str] = set()

    def feed(self, event: SSEEvent) -> list[Finding]:
        kind = event.event
        if kind in _DELTA_EVENTS and not self._calls:
            return []
        if kind == "response.in_progress" and self._id:
            return []
        data = None
        if kind is None:                                      # a gateway that omits "event:" lines
            data = loads_object(event.data)
            kind = as_str(data.get("type")) if data else ""
        handler = _HANDLERS.get(kind)
        if handler is None:
            return []
        if data is None and (data := loads_object(event.data)) is None:
            return []
        return handler(self, data)

    def skips(self, block: bytes) -> bool:
        name = event_name(block)
        return name is not None and (name not in _HANDLED or (name in _DELTA_NAMES and not self._calls))

    def finish(self) -> list[Finding]:
        findings: list[Finding] = [c for call in self._calls.values() if (c := call.finding(self._id))]
        for parts in self._summaries.values():
            if text := "\n".join(parts[i] for i in sorted(parts) if parts[i]):
                findings.append(Thought(text, {"source": "reasoning_summary", "incomplete": True}))
        self._calls.clear()
        self._summaries.clear()
        return findings

    def _emit_item(self, item: object, index: int) -> list[Finding]:
        if not isinstance(item, dict):
            return []
        key = _item_key(item, index)
        self._calls.pop(key, None)
        self._summaries.pop(key, None)
        if key in self._emitted:
            return []
        self._emitted.add(key)
        finding = _item_finding(self._id, item)
        return [finding] if finding else []

    def _created(self, data: dict[str, Any]) -> list[Finding]:
        response = as_dict(data.get("response"))
        return self._named(as_str(response.get("id")), stored=response.get("store") is not False)

    def _named(self, response_id: str, stored: bool = True) -> list[Finding]:
        """The response's id, as soon as the stream tells it: the user's from now on (``Stored``),
        unless the upstream does not keep it (``store: false``, as Codex asks): nothing can name it later."""
        if not response_id or response_id == self._id:
            return []
        self._id = response_id
        return [Stored("response", response_id)] if stored else []

    def _item_added(self, data: dict[str, Any]) -> list[Finding]:
        item = as_dict(data.get("item"))
        if item.get("type") in _CALL_ITEMS and (item_id := as_str(item.get("id"))):
            self._calls[item_id] = _PendingCall(item)
        return []

    def _call_delta(self, data: dict[str, Any]) -> list[Finding]:
        if call := self._calls.get(as_str(data.get("item_id"))):
            call.parts.append(as_str(data.get("delta")))
        return []

    def _summary_delta(self, data: dict[str, Any]) -> list[Finding]:
        parts = self._summaries.setdefault(as_str(data.get("item_id")), {})
        index = as_int(data.get("summary_index"))
        parts[index] = parts.get(index, "") + as_str(data.get("delta"))
        return []

    def _summary_done(self, data: dict[str, Any]) -> list[Finding]:
        parts = self._summaries.setdefault(as_str(data.get("item_id")), {})
        parts[as_int(data.get("summary_index"))] = as_str(data.get("text"))
        return []

    def _item_done(self, data: dict[str, Any]) -> list[Finding]:
        return self._emit_item(data.get("item"), as_int(data.get("output_index")))

    def _final(self, data: dict[str, Any]) -> list[Finding]:
        response = as_dict(data.get("response"))
        findings: list[Finding] = self._named(as_str(response.get("id")), stored=response.get("store") is not False)
        # items the stream never closed with output_item.done (some gateways skip those events)
        output = as_list(response.get("output"))
        findings += [f for i, item in enumerate(output) for f in self._emit_item(item, i)]
        usage = response.get("usage")
        if isinstance(usage, dict) and self._id not in self._usage_ids:
            self._usage_ids.add(self._id)
            findings.append(_usage(self._id, usage))
        if response.get("status") == "failed" or data.get("type") == "response.failed":
            self._error = error_message(response.get("error"), "response failed")
        return findings

    def _stream_error(self, data: dict[str, Any]) -> list[Finding]:
        # {"type":"error","code":..,"message":..} or {"type":"error","error":{..}}
        error = data.get("error") or {"message": data.get("message"), "code": data.get("code")}
        self._error = error_message(error, "upstream stream error")
        return []


_HANDLERS: dict[str, Callable[[_ResponsesObserver, dict[str, Any]], list[Finding]]] = {
    "response.created": _ResponsesObserver._created,
    "response.in_progress": _ResponsesObserver._created,
    "response.output_item.added": _ResponsesObserver._item_added,
    "response.function_call_arguments.delta": _ResponsesObserver._call_delta,
    "response.custom_tool_call_input.delta": _ResponsesObserver._call_delta,
    "response.reasoning_summary_text.delta": _ResponsesObserver._summary_delta,
    "response.reasoning_summary_text.done": _ResponsesObserver._summary_done,
    "response.output_item.done": _ResponsesObserver._item_done,
    **dict.fromkeys(_FINAL_EVENTS, _ResponsesObserver._final),
    "error": _ResponsesObserver._stream_error,
}
_HANDLED = frozenset(kind.encode() for kind in _HANDLERS)     # as raw event names (skips)


def references(body: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The stored objects a request continues: ``previous_response_id``, ``conversation`` (an id or {id})."""
    found: list[tuple[str, str]] = []
    if isinstance(previous := body.get("previous_response_id"), str) and previous:
        found.append(("response", previous))
    conversation = body.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if isinstance(conversation, str) and conversation:
        found.append(("conversation", conversation))
    return tuple(found)


class ResponsesApi(ApiAdapter):
    name = "responses"
    prompt_field = "input"

    def prompt(self, value: object) -> str | None:
        return _prompt(value)

    def request_info(self, body: dict[str, Any]) -> RequestInfo:
        info = super().request_info(body)
        info.references = references(body)
        return info

    def blocking_findings(self, body: dict[str, Any]) -> list[Finding]:
        found = answer_findings(body, "output", _item_finding, _usage)
        response_id = as_str(body.get("id"))
        kept = response_id and body.get("store") is not False      # store: false → nothing to own
        return [Stored("response", response_id), *found] if kept else found

    def new_stream_observer(self) -> StreamObserver:
        return _ResponsesObserver()

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return openai_common.error_body(status, message)

    def stream_error_event(self, message: str) -> bytes:
        response = {
            "id": "",
            "object": "response",
            "created_at": int(time.time()),
            "status": "failed",
            "error": {"code": "server_error", "message": message},
            "output": [],
            "usage": None,
        }
        body = {"type": "response.failed", "response": response}
        return encode_event(orjson.dumps(body), "response.failed")


RESPONSES = ResponsesApi()
