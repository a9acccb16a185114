"""OpenAI Responses: tools after the client's; ``function_call`` + ``function_call_output``; one stream.

The next turn resends the input with the model's output items (reasoning included) and the
tool outputs appended, so the last upstream response holds the whole conversation.

Joined stream: the first turn's ``response.created``/``in_progress``; every turn's visible output
items with consecutive ``output_index`` values and ``sequence_number`` counting through the joined
stream; hidden ``function_call`` items dropped with all their events; one final
``response.completed`` (or ``incomplete``/``failed``) carrying the visible items of all turns and
the usage of all turns.

Ids: every lifecycle event of the joined stream carries the FIRST upstream response's id (the
one ``response.created`` announced before the loop ran; the SDKs insist the id never changes).
But only the LAST upstream response holds the whole conversation (tool results included): the
MCP addon remembers first → last (in the database, for every worker and replica) and sends a
later request whose ``previous_response_id`` is a first id upstream with the last id instead
(``mcp/addon.py``). A blocking answer is the last upstream response with its own id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aibridge.bridge.apis.common import as_dict, as_int, as_list, as_str, loads_object
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

_FINAL = ("response.completed", "response.incomplete", "response.failed")
_STARTS = ("response.created", "response.in_progress", "response.queued")


def _hidden_call(item: dict[str, Any], hidden: Hidden) -> bool:
    return item.get("type") == "function_call" and hidden(as_str(item.get("name")))


class ResponsesTurns:
    def add_tools(self, body: dict[str, Any], tools: Sequence[FunctionTool]) -> None:
        injected = [{"type": "function", "name": t.name, "description": t.description, "parameters": t.schema,
                     "strict": False} for t in tools]
        body["tools"] = as_list(body.get("tools")) + injected
        body["parallel_tool_calls"] = False

    def calls(self, answer: dict[str, Any]) -> list[Call]:
        return [Call(as_str(i.get("call_id")), as_str(i.get("name")), parse_arguments(as_str(i.get("arguments"))),
                     as_str(i.get("arguments")))
                for i in map(as_dict, as_list(answer.get("output"))) if i.get("type") == "function_call"]

    def continue_with(self, body: dict[str, Any], answer: dict[str, Any], results: Sequence[Result]) -> dict[str, Any]:
        given = body.get("input")
        items = [{"role": "user", "content": given}] if isinstance(given, str) else as_list(given)
        outputs = [{"type": "function_call_output", "call_id": r.call.id, "output": r.text} for r in results]
        return {**body, "input": [*items, *as_list(answer.get("output")), *outputs]}

    def final_answer(self, answer: dict[str, Any], hidden: Hidden, usages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        output = [i for i in as_list(answer.get("output")) if not _hidden_call(as_dict(i), hidden)]
        return {**answer, "output": output, "usage": sum_usages(usages)}

    def usage(self, answer: dict[str, Any]) -> dict[str, Any]:
        return as_dict(answer.get("usage"))

    def joiner(self, hidden: Hidden) -> StreamJoiner:
        return _ResponsesJoiner(hidden)


class _ResponsesJoiner:
    def __init__(self, hidden: Hidden) -> None:
        self._hidden = hidden
        self._turn = 0
        self._sequence = 0
        self._next_index = 0
        self._items: list[dict[str, Any]] = []       # visible items of finished turns
        self._shown_id = ""                          # the first upstream response's id
        self._usages: list[dict[str, Any]] = []
        self._start_turn()

    def _start_turn(self) -> None:
        self._index_map: dict[int, int | None] = {}  # upstream output_index → client index (None: hidden)
        self._final: dict[str, Any] | None = None
        self._done_items: dict[int, dict[str, Any]] = {}

    def feed(self, event: SSEEvent) -> bytes:
        data = loads_object(event.data)
        if data is None:
            return event_bytes(event)
        kind = event.event or as_str(data.get("type"))
        if kind in _STARTS:
            if self._turn:
                return b""
            self._shown_id = self._shown_id or as_str(as_dict(data.get("response")).get("id"))
            return self._emit(data, event.event)
        if kind in _FINAL:
            self._final = data
            return b""
        if "output_index" not in data:
            return self._emit(data, event.event)      # errors and events we do not know
        index = as_int(data.get("output_index"))
        if kind == "response.output_item.added":
            hide = _hidden_call(as_dict(data.get("item")), self._hidden)
            self._index_map[index] = None if hide else self._next_index
            if not hide:
                self._next_index += 1
        elif kind == "response.output_item.done":
            self._done_items[index] = as_dict(data.get("item"))
        client_index = self._index_map.get(index, index)
        if client_index is None:
            return b""
        return self._emit({**data, "output_index": client_index}, event.event)

    def _emit(self, data: dict[str, Any], event: str | None) -> bytes:
        if "sequence_number" in data:
            data = {**data, "sequence_number": self._sequence}
        self._sequence += 1
        return json_event(data, event)

    def _turn_items(self) -> list[dict[str, Any]]:
        response = as_dict(as_dict(self._final).get("response"))
        output = as_list(response.get("output")) or [self._done_items[i] for i in sorted(self._done_items)]
        return [as_dict(i) for i in output]

    def answer(self) -> dict[str, Any]:
        response = dict(as_dict(as_dict(self._final).get("response")))
        response["output"] = self._turn_items()
        return response

    def next_turn(self) -> None:
        self._items += [i for i in self._turn_items() if not _hidden_call(i, self._hidden)]
        self._usages.append(as_dict(self.answer().get("usage")))
        self._turn += 1
        self._start_turn()

    def finish(self) -> bytes:
        if self._final is None:
            return b""
        response = dict(as_dict(self._final.get("response")))
        if self._shown_id:
            response["id"] = self._shown_id
        visible = [i for i in self._turn_items() if not _hidden_call(i, self._hidden)]
        response["output"] = self._items + visible
        response["usage"] = sum_usages([*self._usages, as_dict(response.get("usage"))])
        return self._emit({**self._final, "response": response}, as_str(self._final.get("type")) or None)


    def fail(self) -> bytes:
        """A ``response.failed`` (held like any final event) is the client's error."""
        return self.finish()

    def error(self, message: str) -> bytes:
        response = {**as_dict(as_dict(self._final).get("response")), "id": self._shown_id, "status": "failed",
                    "error": {"code": "server_error", "message": message},
                    "output": self._items, "usage": sum_usages(self._usages) or None}
        return self._emit({"type": "response.failed", "response": response, "sequence_number": 0},
                          "response.failed")


RESPONSES = ResponsesTurns()
