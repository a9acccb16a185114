"""What each API tells the flow to run several turns in one interception."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from aibridge.bridge.apis.common import as_dict
from aibridge.bridge.sse import SSEEvent, encode_event

Hidden = Callable[[str], bool]        # tool names whose calls the client must not see


@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str
    schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    name: str
    arguments: dict[str, Any]         # {} when the model's arguments were not a JSON object
    raw: str                          # the arguments as the model wrote them


@dataclass(frozen=True, slots=True)
class Result:
    call: Call
    text: str
    is_error: bool


class StreamJoiner(Protocol):
    def feed(self, event: SSEEvent) -> bytes:
        """What to write to the client for this event now (b"" to hide or hold it)."""

    def answer(self) -> dict[str, Any]:
        """The turn's answer in the API's blocking shape (built from the events seen)."""

    def next_turn(self) -> None:
        """Another turn follows: drop what the finished turn held back."""

    def finish(self) -> bytes:
        """The last turn ended: the held closing events, with the usage of all turns."""

    def fail(self) -> bytes:
        """The turn's stream carried an error: whatever held event tells the client so."""

    def error(self, message: str) -> bytes:
        """An error the bridge ends the joined stream with (iteration limit, upstream gone)."""


class TurnApi(Protocol):
    def add_tools(self, body: dict[str, Any], tools: Sequence[FunctionTool]) -> None: ...

    def calls(self, answer: dict[str, Any]) -> list[Call]: ...

    def continue_with(self, body: dict[str, Any], answer: dict[str, Any], results: Sequence[Result]) -> dict[str, Any]:
        """The next turn's request: the previous one plus the model's answer and the tool results."""

    def final_answer(self, answer: dict[str, Any], hidden: Hidden, usages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """A blocking answer for the client: the last turn's, without hidden calls, usage summed."""

    def usage(self, answer: dict[str, Any]) -> dict[str, Any]: ...

    def joiner(self, hidden: Hidden) -> StreamJoiner: ...


def sum_usage(total: dict[str, Any], add: dict[str, Any]) -> dict[str, Any]:
    """Counts add up (nested details too); other values (a service tier) are the latest."""
    out = dict(total)
    for key, value in add.items():
        old = out.get(key)
        if isinstance(value, dict):
            out[key] = sum_usage(as_dict(old), value)
        elif isinstance(value, int) and not isinstance(value, bool) and isinstance(old, int):
            out[key] = old + value
        elif value is not None or key not in out:
            out[key] = value
    return out


def sum_usages(usages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for usage in usages:
        total = sum_usage(total, usage)
    return total


def parse_arguments(raw: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def event_bytes(event: SSEEvent) -> bytes:
    return encode_event(event.data, event.event)


def json_event(data: dict[str, Any], event: str | None) -> bytes:
    return encode_event(orjson.dumps(data), event)
