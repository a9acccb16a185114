"""Anthropic /v1/messages: prompt, usage, tool calls and thinking, blocking and streamed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from aibridge.bridge.apis.base import Finding, StreamObserver, Thought, ToolCall, Usage
from aibridge.bridge.apis.common import (
    ApiAdapter,
    ObserverBase,
    answer_findings,
    as_dict,
    as_int,
    as_str,
    compact_json_text,
    counts,
    dumps_text,
    error_message,
    event_name,
    loads_object,
)
from aibridge.bridge.sse import SSEEvent, encode_event

# Blocks the model fills in: tool calls (client and server side) and thinking.
_CLIENT_TOOL = "tool_use"
_SERVER_TOOLS = frozenset({"server_tool_use", "mcp_tool_use"})
_TOOLS = _SERVER_TOOLS | {_CLIENT_TOOL}
_THINKING = "thinking"
_TRACKED = _TOOLS | {_THINKING}

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """The Anthropic error type for an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error body: ``{"type": "error", "error": {"type": kind, "message": message}}``."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def anthropic_error_event(kind: str, message: str) -> bytes:
    """The same error as a stream event (``event: error``)."""
    return encode_event(orjson.dumps(anthropic_error(kind, message)), "error")


def _usage(message_id: str, usage: dict[str, Any]) -> Usage:
    creation = as_dict(usage.get("cache_creation"))
    server_tools = as_dict(usage.get("server_tool_use"))
    metadata = counts(
        cache_ephemeral_5m_input=creation.get("ephemeral_5m_input_tokens"),
        cache_ephemeral_1h_input=creation.get("ephemeral_1h_input_tokens"),
        web_search_requests=server_tools.get("web_search_requests"),
        web_fetch_requests=server_tools.get("web_fetch_requests"),
    )
    tier = usage.get("service_tier")
    if isinstance(tier, str) and tier:
        metadata["service_tier"] = tier
    return Usage(
        response_id=message_id,
        # Anthropic's input_tokens already excludes cache reads and writes
        input_tokens=as_int(usage.get("input_tokens")),
        output_tokens=as_int(usage.get("output_tokens")),
        cache_read_input_tokens=as_int(usage.get("cache_read_input_tokens")),
        cache_write_input_tokens=as_int(usage.get("cache_creation_input_tokens")),
        metadata=metadata,
    )


def _merge_usage(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Stream usage counts are cumulative: keep the largest seen, never add them up."""
    for key, value in update.items():
        old = into.get(key)
        if isinstance(value, dict):
            merged = dict(old) if isinstance(old, dict) else {}
            _merge_usage(merged, value)
            into[key] = merged
        elif isinstance(value, int) and isinstance(old, int):
            into[key] = max(old, value)
        elif value is not None:
            into[key] = value


def _tool_call(message_id: str, block: dict[str, Any], input_text: str) -> ToolCall:
    kind = block.get("type")
    metadata: dict[str, Any] = {}
    if kind in _SERVER_TOOLS:
        metadata["server_tool"] = True
        if server := as_str(block.get("server_name")):
            metadata["server_name"] = server
    return ToolCall(message_id, as_str(block.get("id")), as_str(block.get("name")), input_text, metadata)


def _block_finding(message_id: str, block: object) -> Finding | None:
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind in _TOOLS:
        return _tool_call(message_id, block, dumps_text(block.get("input", {})))
    if kind == _THINKING and (text := as_str(block.get("thinking"))):
        return Thought(text, {"source": "thinking"})
    return None


@dataclass(slots=True)
class _OpenBlock:
    """A tool_use or thinking block between its content_block_start and content_block_stop."""

    block: dict[str, Any]
    parts: list[str] = field(default_factory=list)

    def finding(self, message_id: str, complete: bool) -> Finding | None:
        extra = {} if complete else {"incomplete": True}
        text = "".join(self.parts)
        if self.block.get("type") == _THINKING:
            return Thought(text, {"source": "thinking", **extra}) if text else None
        # the streamed JSON is re-encoded so that it matches the blocking form
        input_text = compact_json_text(text) if text else dumps_text(self.block.get("input", {}))
        call = _tool_call(message_id, self.block, input_text)
        call.metadata.update(extra)
        return call


class _MessagesObserver(ObserverBase):
    __slots__ = ("_blocks", "_message_id", "_usage")

    def __init__(self) -> None:
        super().__init__()
        self._message_id = ""
        self._usage: dict[str, Any] | None = None     # merged usage of the message, until emitted
        self._blocks: dict[int, _OpenBlock] = {}

    def feed(self, event: SSEEvent) -> list[Finding]:
        kind = event.event
        # Text deltas are most of a stream; deltas matter only while a tracked block is open.
        if kind == "content_block_delta" and not self._blocks:
            return []
        data = None
        if kind is None:                               # a gateway that omits "event:" lines
            data = loads_object(event.data)
            kind = as_str(data.get("type")) if data else ""
            if kind == "content_block_delta" and not self._blocks:
                return []
        handler = _HANDLERS.get(kind)
        if handler is None:
            return []
        if data is None and (data := loads_object(event.data)) is None:
            return []
        return handler(self, data)

    def skips(self, block: bytes) -> bool:
        name = event_name(block)
        return name is not None and (name not in _HANDLED or (name == b"content_block_delta" and not self._blocks))

    def finish(self) -> list[Finding]:
        findings = [f for block in self._blocks.values() if (f := block.finding(self._message_id, False))]
        self._blocks.clear()
        return findings + self._flush_usage()

    def _flush_usage(self) -> list[Finding]:
        if self._usage is None:
            return []
        usage, self._usage = self._usage, None
        return [_usage(self._message_id, usage)]

    def _message_start(self, data: dict[str, Any]) -> list[Finding]:
        findings = self.finish()                       # a previous message that never stopped
        message = as_dict(data.get("message"))
        self._message_id = as_str(message.get("id"))
        self._usage = {}
        _merge_usage(self._usage, as_dict(message.get("usage")))
        return findings

    def _block_start(self, data: dict[str, Any]) -> list[Finding]:
        block = as_dict(data.get("content_block"))
        if block.get("type") in _TRACKED:
            self._blocks[as_int(data.get("index"))] = _OpenBlock(block)
        return []

    def _block_delta(self, data: dict[str, Any]) -> list[Finding]:
        block = self._blocks.get(as_int(data.get("index")))
        if block is not None:
            delta = as_dict(data.get("delta"))
            kind = delta.get("type")
            if kind == "input_json_delta":
                block.parts.append(as_str(delta.get("partial_json")))
            elif kind == "thinking_delta":
                block.parts.append(as_str(delta.get("thinking")))
        return []

    def _block_stop(self, data: dict[str, Any]) -> list[Finding]:
        block = self._blocks.pop(as_int(data.get("index")), None)
        finding = block.finding(self._message_id, True) if block else None
        return [finding] if finding else []

    def _message_delta(self, data: dict[str, Any]) -> list[Finding]:
        usage = data.get("usage")
        if isinstance(usage, dict):
            if self._usage is None:                    # no message_start seen: still count it
                self._usage = {}
            _merge_usage(self._usage, usage)
        return []

    def _message_stop(self, data: dict[str, Any]) -> list[Finding]:
        return self._flush_usage()

    def _stream_error(self, data: dict[str, Any]) -> list[Finding]:
        self._error = error_message(data.get("error"), "upstream stream error")
        return []


_HANDLERS: dict[str, Callable[[_MessagesObserver, dict[str, Any]], list[Finding]]] = {
    "message_start": _MessagesObserver._message_start,
    "content_block_start": _MessagesObserver._block_start,
    "content_block_delta": _MessagesObserver._block_delta,
    "content_block_stop": _MessagesObserver._block_stop,
    "message_delta": _MessagesObserver._message_delta,
    "message_stop": _MessagesObserver._message_stop,
    "error": _MessagesObserver._stream_error,
}
_HANDLED = frozenset(kind.encode() for kind in _HANDLERS)     # as raw event names (skips)


class MessagesApi(ApiAdapter):
    name = "messages"

    def blocking_findings(self, body: dict[str, Any]) -> list[Finding]:
        return answer_findings(body, "content", _block_finding, _usage)

    def new_stream_observer(self) -> StreamObserver:
        return _MessagesObserver()

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return anthropic_error(error_type(status), message)

    def stream_error_event(self, message: str) -> bytes:
        return anthropic_error_event("api_error", message)


MESSAGES = MessagesApi()
