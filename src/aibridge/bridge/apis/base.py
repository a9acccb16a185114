"""What each provider API (chat completions, responses, messages) must tell the shared flow.

An API module reads; it never does I/O. The flow in ``bridge/intercept.py`` owns the request
lifecycle and calls these functions at its moments:

- ``request_info(body)`` once the client's JSON is parsed,
- ``prepare_upstream(body)`` before the body goes upstream (the only place a body may change),
- ``new_stream_observer()`` for a streaming answer, fed every SSE event as it is relayed,
- ``blocking_findings(body)`` for a blocking answer,
- ``error_body`` / ``stream_error_event`` to speak errors in the provider's own shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aibridge.bridge.sse import SSEEvent


@dataclass(slots=True)
class RequestInfo:
    model: str
    stream: bool
    prompt: str | None          # text of the last message whose role is "user"
    prompt_metadata: dict[str, Any] = field(default_factory=dict)   # recorded with the prompt
    max_output_tokens: int | None = None    # the client's output cap (max_tokens and kin), if any
    size: int = 0               # bytes of the request body (the flow sets it)
    # Stored objects the request names, as (kind, id): a Responses request's previous_response_id
    # and conversation, a passed-through path's {response} or {conversation}.
    references: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Usage:
    """Token usage of one upstream call. ``input_tokens`` excludes cached tokens."""

    response_id: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ToolCall:
    response_id: str
    call_id: str
    name: str
    input: str                  # JSON text of the arguments (raw text for custom tools)
    metadata: dict[str, Any] = field(default_factory=dict)
    injected: bool = False      # an injected MCP tool the bridge ran itself (name: the original tool's)
    server_url: str | None = None           # the MCP server that ran it
    invocation_error: str | None = None     # why running it failed, if it did
    started_ns: int | None = None   # wall clock of an injected call's run (for its span)
    ended_ns: int | None = None


@dataclass(slots=True)
class Thought:
    content: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Stored:
    """An object the upstream keeps for later requests to name: a response (``resp_…``), a
    conversation (``conv_…``). Reported like a finding; only the ``stored`` hook hears it."""

    kind: str                   # "response" | "conversation"
    id: str


Finding = Usage | ToolCall | Thought | Stored


class StreamObserver(Protocol):
    def feed(self, event: SSEEvent) -> list[Finding]:
        """Findings completed by this event (most events complete none)."""

    def skips(self, block: bytes) -> bool:
        """True for an event (its raw lines) that ``feed`` would pass over, recognised without
        decoding it: most of a stream is text deltas. Any doubt answers False (only costs a parse)."""

    @property
    def skips_all(self) -> Callable[[bytes], bool] | None:
        """Asked before ``skips`` with the events one chunk completed, one or several (their raw lines,
        blank lines between): True when none has anything ``feed`` would use; any doubt answers
        False. None for an observer that tells one event at a time (Messages and Responses: their
        events are told by name, and checking a chunk would cost what checking its events does)."""

    def finish(self) -> list[Finding]:
        """End of stream (normal or not): whatever is complete or partially seen, once."""

    @property
    def error(self) -> str | None:
        """The upstream's error message if the stream carried an error event."""


class Api(Protocol):
    name: str                   # "chat_completions" | "responses" | "messages"

    def request_info(self, body: dict[str, Any]) -> RequestInfo: ...

    def prepare_upstream(self, body: dict[str, Any]) -> bool:
        """Adjust the upstream body in place; True when it changed (so it is re-encoded)."""

    def blocking_findings(self, body: dict[str, Any]) -> list[Finding]: ...

    def new_stream_observer(self) -> StreamObserver: ...

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """A JSON error body in this provider's shape, for errors the bridge itself raises."""

    def stream_error_event(self, message: str) -> bytes:
        """One encoded SSE event that tells a streaming client the answer failed."""
