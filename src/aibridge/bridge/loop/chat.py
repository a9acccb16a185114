"""OpenAI chat completions: tools after the client's; ``tool_calls`` + ``role: "tool"``; one stream.

Joined stream: every chunk carries the first turn's id; hidden tool calls are cut out of the
deltas (a chunk left with nothing is dropped); the client's tool calls keep consecutive indices;
a turn's ``finish_reason``, usage chunk and ``[DONE]`` are held and only the last turn's are sent,
its usage replaced by the sum of all turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from aibridge.bridge.apis.chat_completions import CHAT_COMPLETIONS as API
from aibridge.bridge.apis.common import as_dict, as_int, as_list, as_str, loads_object
from aibridge.bridge.loop.base import (
    Call,
    FunctionTool,
    Hidden,
    Result,
    StreamJoiner,
    event_bytes,
    parse_arguments,
    sum_usages,
)
from aibridge.bridge.sse import SSEEvent, encode_event


def _message(answer: dict[str, Any]) -> dict[str, Any]:
    return as_dict(as_dict(next(iter(as_list(answer.get("choices"))), {})).get("message"))


class ChatTurns:
    def add_tools(self, body: dict[str, Any], tools: Sequence[FunctionTool]) -> None:
        injected = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                      "parameters": t.schema}} for t in tools]
        body["tools"] = as_list(body.get("tools")) + injected
        body["parallel_tool_calls"] = False

    def calls(self, answer: dict[str, Any]) -> list[Call]:
        calls = []
        for call in map(as_dict, as_list(_message(answer).get("tool_calls"))):
            function = as_dict(call.get("function"))
            raw = as_str(function.get("arguments"))
            calls.append(Call(as_str(call.get("id")), as_str(function.get("name")), parse_arguments(raw), raw))
        return calls

    def continue_with(self, body: dict[str, Any], answer: dict[str, Any], results: Sequence[Result]) -> dict[str, Any]:
        message = _message(answer)
        assistant = {"role": "assistant", "content": message.get("content"),
                     "tool_calls": [{"id": r.call.id, "type": "function",
                                     "function": {"name": r.call.name, "arguments": r.call.raw}} for r in results]}
        tool_messages = [{"role": "tool", "tool_call_id": r.call.id, "content": r.text} for r in results]
        return {**body, "messages": [*as_list(body.get("messages")), assistant, *tool_messages]}

    def final_answer(self, answer: dict[str, Any], hidden: Hidden, usages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        choices = []
        for choice in map(as_dict, as_list(answer.get("choices"))):
            message = dict(as_dict(choice.get("message")))
            if "tool_calls" in message:
                kept = [c for c in as_list(message["tool_calls"])
                        if not hidden(as_str(as_dict(as_dict(c).get("function")).get("name")))]
                if kept:
                    message["tool_calls"] = kept
                else:
                    del message["tool_calls"]
            choices.append({**choice, "message": message})
        return {**answer, "choices": choices, "usage": sum_usages(usages)}

    def usage(self, answer: dict[str, Any]) -> dict[str, Any]:
        return as_dict(answer.get("usage"))

    def joiner(self, hidden: Hidden) -> StreamJoiner:
        return _ChatJoiner(hidden)


class _ChatJoiner:
    def __init__(self, hidden: Hidden) -> None:
        self._hidden = hidden
        self._id: str | None = None                  # the first turn's id, on every chunk
        self._usages: list[dict[str, Any]] = []
        self._start_turn()

    def _start_turn(self) -> None:
        self._usage: dict[str, Any] = {}
        self._held: list[dict[str, Any]] = []        # chunks carrying a finish_reason or the usage
        self._content: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}  # upstream index → call being built
        self._visible: dict[int, int | None] = {}    # upstream index → client index (None: hidden)
        self._last: dict[str, Any] = {}

    def feed(self, event: SSEEvent) -> bytes:
        if event.data == "[DONE]":
            return b""
        chunk = loads_object(event.data)
        if chunk is None:
            return event_bytes(event)
        if "error" in chunk and not chunk.get("choices"):
            return event_bytes(event)
        self._id = self._id or as_str(chunk.get("id"))
        self._last = chunk
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = [c for c in map(self._choice, as_list(chunk.get("choices"))) if c is not None]
        held = any(c.get("finish_reason") for c in choices) or isinstance(chunk.get("usage"), dict)
        if not choices and not held:
            return b""
        out = {**chunk, "id": self._id, "choices": choices}
        if held:
            self._held.append(out)
            return b""
        return encode_event(orjson.dumps(out))

    def _choice(self, choice: object) -> dict[str, Any] | None:
        choice = as_dict(choice)
        delta = dict(as_dict(choice.get("delta")))
        if isinstance(content := delta.get("content"), str):
            self._content.append(content)
        if "tool_calls" in delta:
            kept = [c for c in map(self._call_delta, as_list(delta["tool_calls"])) if c is not None]
            if kept:
                delta["tool_calls"] = kept
            else:
                del delta["tool_calls"]
        if not delta and not choice.get("finish_reason") and choice.get("delta"):
            return None                              # only a hidden call was in it
        return {**choice, "delta": delta}

    def _call_delta(self, delta: object) -> dict[str, Any] | None:
        delta = as_dict(delta)
        index = as_int(delta.get("index"))
        function = as_dict(delta.get("function"))
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = {"id": as_str(delta.get("id")), "type": "function",
                                         "function": {"name": as_str(function.get("name")), "arguments": ""}}
            hide = self._hidden(call["function"]["name"])
            self._visible[index] = None if hide else sum(v is not None for v in self._visible.values())
        call["function"]["arguments"] += as_str(function.get("arguments"))
        client_index = self._visible[index]
        return None if client_index is None else {**delta, "index": client_index}

    def answer(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._content) or None}
        if self._calls:
            message["tool_calls"] = [self._calls[i] for i in sorted(self._calls)]
        finish = next((c.get("finish_reason") for h in self._held for c in as_list(h.get("choices"))
                       if as_dict(c).get("finish_reason")), None)
        return {"id": as_str(self._last.get("id")), "object": "chat.completion", "model": self._last.get("model"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": self._usage}

    def next_turn(self) -> None:
        self._usages.append(self._usage)
        self._start_turn()

    def finish(self) -> bytes:
        total = sum_usages([*self._usages, self._usage])
        out = b""
        for chunk in self._held:
            if isinstance(chunk.get("usage"), dict):
                chunk = {**chunk, "usage": total}
            out += encode_event(orjson.dumps(chunk))
        return out + encode_event(b"[DONE]")


    def error(self, message: str) -> bytes:
        return API.stream_error_event(message)

    def fail(self) -> bytes:
        return b""                                   # the error chunk itself went through


CHAT = ChatTurns()
