"""Anthropic Messages: tools go before the client's; ``tool_use`` + ``tool_result``; one stream.

Joined stream: the first turn's ``message_start``; every turn's visible content blocks with
consecutive indices; hidden ``tool_use`` blocks dropped with all their deltas; one
``message_delta`` (the last turn's stop reason, the usage of all turns) and one ``message_stop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aibridge.bridge.apis.common import as_dict, as_int, as_list, as_str, dumps_text, loads_object
from aibridge.bridge.apis.messages import MESSAGES as API
from aibridge.bridge.loop.base import (
    Call,
    FunctionTool,
    Hidden,
    Result,
    StreamJoiner,
    event_bytes,
    json_event,
    parse_arguments,
    sum_usages,
)
from aibridge.bridge.sse import SSEEvent

_PARALLEL_CHOICES = ("auto", "any", "tool")


def _max_usage(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Stream usage is cumulative within one message: the largest seen counts."""
    for key, value in update.items():
        old = into.get(key)
        if isinstance(value, dict):
            merged = dict(old) if isinstance(old, dict) else {}
            _max_usage(merged, value)
            into[key] = merged
        elif isinstance(value, int) and isinstance(old, int):
            into[key] = max(old, value)
        elif value is not None:
            into[key] = value


class MessagesTurns:
    def add_tools(self, body: dict[str, Any], tools: Sequence[FunctionTool]) -> None:
        injected = [{"name": t.name, "description": t.description, "input_schema": t.schema} for t in tools]
        body["tools"] = injected + as_list(body.get("tools"))
        choice = body.get("tool_choice")
        if choice is None:
            body["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}
        elif isinstance(choice, dict) and choice.get("type") in _PARALLEL_CHOICES:
            body["tool_choice"] = {**choice, "disable_parallel_tool_use": True}

    def calls(self, answer: dict[str, Any]) -> list[Call]:
        return [Call(as_str(b.get("id")), as_str(b.get("name")), as_dict(b.get("input")),
                     as_str(b.get("_raw_input")) or dumps_text(b.get("input", {})))
                for b in map(as_dict, as_list(answer.get("content"))) if b.get("type") == "tool_use"]

    def continue_with(self, body: dict[str, Any], answer: dict[str, Any], results: Sequence[Result]) -> dict[str, Any]:
        content = [{k: v for k, v in as_dict(b).items() if k != "_raw_input"} for b in as_list(answer.get("content"))]
        tool_results = [{"type": "tool_result", "tool_use_id": r.call.id, "content": r.text,
                         **({"is_error": True} if r.is_error else {})} for r in results]
        messages = [*as_list(body.get("messages")), {"role": "assistant", "content": content},
                    {"role": "user", "content": tool_results}]
        return {**body, "messages": messages}

    def final_answer(self, answer: dict[str, Any], hidden: Hidden, usages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        content = [b for b in as_list(answer.get("content"))
                   if not (as_dict(b).get("type") == "tool_use" and hidden(as_str(as_dict(b).get("name"))))]
        return {**answer, "content": content, "usage": sum_usages(usages)}

    def usage(self, answer: dict[str, Any]) -> dict[str, Any]:
        return as_dict(answer.get("usage"))

    def joiner(self, hidden: Hidden) -> StreamJoiner:
        return _MessagesJoiner(hidden)


class _MessagesJoiner:
    def __init__(self, hidden: Hidden) -> None:
        self._hidden = hidden
        self._turn = 0
        self._next_index = 0                         # the client's next content block index
        self._usages: list[dict[str, Any]] = []      # of finished turns
        self._start_turn()

    def _start_turn(self) -> None:
        self._message: dict[str, Any] = {}
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, Any]] = {}   # upstream index → block being built
        self._parts: dict[int, list[str]] = {}         # upstream index → partial JSON of a tool_use
        self._index_map: dict[int, int | None] = {}    # upstream index → client index (None: hidden)
        self._held_delta: dict[str, Any] | None = None

    def feed(self, event: SSEEvent) -> bytes:
        data = loads_object(event.data)
        if data is None:
            return event_bytes(event)
        kind = event.event or as_str(data.get("type"))
        if kind == "message_start":
            self._message = dict(as_dict(data.get("message")))
            _max_usage(self._usage, as_dict(self._message.get("usage")))
            return event_bytes(event) if self._turn == 0 else b""
        if kind in ("content_block_start", "content_block_delta", "content_block_stop"):
            return self._block_event(kind, data, event)
        if kind == "message_delta":
            _max_usage(self._usage, as_dict(data.get("usage")))
            self._held_delta = data
            return b""
        if kind == "message_stop":
            return b""
        return event_bytes(event)                     # ping, error, anything new

    def _block_event(self, kind: str, data: dict[str, Any], event: SSEEvent) -> bytes:
        index = as_int(data.get("index"))
        if kind == "content_block_start":
            block = dict(as_dict(data.get("content_block")))
            self._blocks[index] = block
            hide = block.get("type") == "tool_use" and self._hidden(as_str(block.get("name")))
            self._index_map[index] = None if hide else self._next_index
            if not hide:
                self._next_index += 1
        else:
            self._build(kind, index, data)
        client_index = self._index_map.get(index)
        if client_index is None:
            return b"" if index in self._index_map else event_bytes(event)
        if client_index == index:
            return event_bytes(event)
        return json_event({**data, "index": client_index}, event.event)

    def _build(self, kind: str, index: int, data: dict[str, Any]) -> None:
        block = self._blocks.get(index)
        if block is None:
            return
        if kind == "content_block_stop":
            if index in self._parts:
                raw = "".join(self._parts.pop(index))
                block["input"] = parse_arguments(raw)
                block["_raw_input"] = raw
            return
        delta = as_dict(data.get("delta"))
        dtype = delta.get("type")
        if dtype == "text_delta":
            block["text"] = as_str(block.get("text")) + as_str(delta.get("text"))
        elif dtype == "thinking_delta":
            block["thinking"] = as_str(block.get("thinking")) + as_str(delta.get("thinking"))
        elif dtype == "signature_delta":
            block["signature"] = as_str(delta.get("signature"))
        elif dtype == "input_json_delta":
            self._parts.setdefault(index, []).append(as_str(delta.get("partial_json")))
        elif dtype == "citations_delta":
            block["citations"] = [*as_list(block.get("citations")), delta.get("citation")]

    def answer(self) -> dict[str, Any]:
        delta = as_dict(as_dict(self._held_delta).get("delta"))
        content = [self._blocks[i] for i in sorted(self._blocks)]
        return {**self._message, **delta, "content": content, "usage": dict(self._usage)}

    def next_turn(self) -> None:
        self._usages.append(self._usage)
        self._turn += 1
        self._start_turn()

    def finish(self) -> bytes:
        usage = sum_usages([*self._usages, self._usage])
        delta = self._held_delta or {"type": "message_delta", "delta": {"stop_reason": None, "stop_sequence": None}}
        return (json_event({**delta, "usage": usage}, "message_delta")
                + json_event({"type": "message_stop"}, "message_stop"))


    def error(self, message: str) -> bytes:
        return API.stream_error_event(message)

    def fail(self) -> bytes:
        return b""                                   # the error event itself went through


MESSAGES = MessagesTurns()
