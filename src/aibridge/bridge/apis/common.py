"""Small readers shared by the API modules.

Client and upstream JSON is untrusted: every reader here accepts any shape and falls back to
an empty value instead of raising, so a strange body can never break the relay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from aibridge.bridge.apis.base import Finding, RequestInfo, Usage


def as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: object) -> str:
    return value if isinstance(value, str) else ""


def as_int(value: object) -> int:
    if type(value) is int:          # the common case first; bool (a subclass) is never a count
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


def counts(**values: object) -> dict[str, Any]:
    """Metadata of the non-zero counts only, so that absent and zero extras compare equal."""
    return {key: n for key, value in values.items() if value is not None and (n := as_int(value))}


def loads_object(data: str | bytes) -> dict[str, Any] | None:
    """A JSON object, or None for anything else (malformed events are skipped, not raised)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def dumps_text(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:                    # e.g. an integer beyond 64 bits parsed by another library
        return str(value)


def compact_json_text(text: str) -> str:
    """The same JSON in orjson's compact form (streamed fragments and whole bodies then agree);
    text that is not JSON, such as a truncated fragment, is kept as it is."""
    try:
        return orjson.dumps(orjson.loads(text)).decode()
    except (orjson.JSONDecodeError, TypeError):
        return text


def request_model(body: dict[str, Any]) -> str:
    return as_str(body.get("model"))


def request_stream(body: dict[str, Any]) -> bool:
    return body.get("stream") is True


def max_output_tokens(body: dict[str, Any]) -> int | None:
    """The output cap a request sets: ``max_tokens`` (Messages, older Chat), ``max_completion_tokens``
    (Chat) or ``max_output_tokens`` (Responses)."""
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        if (value := as_int(body.get(name))) > 0:
            return value
    return None


def last_user_message(messages: object) -> dict[str, Any] | None:
    """The last item whose role is "user" (not simply the last item: Claude Code ends its
    messages with a ``role: "system"`` item)."""
    for item in reversed(as_list(messages)):
        if isinstance(item, dict) and item.get("role") == "user":
            return item
    return None


def last_text_part(parts: list[Any], part_type: str) -> str | None:
    for part in reversed(parts):
        if isinstance(part, dict) and part.get("type") == part_type:
            text = part.get("text")
            if isinstance(text, str):
                return text
    return None


def message_prompt(messages: object) -> str | None:
    """Chat and Messages: the last user message's string content, or its last text part
    (tool results are not the user's words)."""
    message = last_user_message(messages)
    if message is None:
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    return last_text_part(as_list(content), "text")


def answer_findings(body: dict[str, Any], items_field: str,
                    item_finding: Callable[[str, object], Finding | None],
                    usage: Callable[[str, dict[str, Any]], Usage]) -> list[Finding]:
    """A blocking answer (Messages, Responses): one finding per output item, then its usage."""
    answer_id = as_str(body.get("id"))
    findings = [f for item in as_list(body.get(items_field)) if (f := item_finding(answer_id, item))]
    if isinstance(found := body.get("usage"), dict):
        findings.append(usage(answer_id, found))
    return findings


class ObserverBase:
    """What every stream observer shares: the upstream's error message, once an error event came."""

    __slots__ = ("_error",)

    def __init__(self) -> None:
        self._error: str | None = None

    @property
    def error(self) -> str | None:
        return self._error

    def skips(self, block: bytes) -> bool:
        return False

    skips_all: Callable[[bytes], bool] | None = None


def event_name(block: bytes) -> bytes | None:
    """The ``event:`` name of a raw SSE event written the usual way (its first line), else None."""
    if not block.startswith(b"event: "):
        return None
    return block[7:].partition(b"\n")[0]


class ApiAdapter:
    """What the three APIs do alike; each module adds its readers and error shapes."""

    name = ""
    prompt_field = "messages"       # the request field holding the conversation

    def prompt(self, value: object) -> str | None:
        return message_prompt(value)

    def request_info(self, body: dict[str, Any]) -> RequestInfo:
        return RequestInfo(request_model(body), request_stream(body), self.prompt(body.get(self.prompt_field)),
                           max_output_tokens=max_output_tokens(body))

    def prepare_upstream(self, body: dict[str, Any]) -> bool:
        return False


def error_message(error: object, fallback: str) -> str:
    """The message of an upstream error object (or string), else its type or code."""
    if isinstance(error, str) and error:
        return error
    err = as_dict(error)
    for key in ("message", "type", "code"):
        value = err.get(key)
        if isinstance(value, str) and value:
            return value
    return fallback
