"""Record types: what the flow hands to the recorder, in the order it happened."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class InterceptionStart:
    id: uuid.UUID
    initiator_id: uuid.UUID
    provider: str
    provider_name: str
    api: str
    model: str
    client: str
    client_session_id: str | None
    user_agent: str
    metadata: dict[str, Any]
    started_at: dt.datetime = field(default_factory=_now)
    replica_id: uuid.UUID | None = None     # the server process that runs it (see store/replicas.py)
    requested_model: str | None = None          # what the client asked for (an alias may change it)


@dataclass(slots=True)
class InterceptionEnd:
    id: uuid.UUID
    ended_at: dt.datetime = field(default_factory=_now)
    metadata: dict[str, Any] | None = None     # merged into the interception's metadata
    cost_usd: float | None = None              # from the recorded tokens; None when the model has no price


@dataclass(slots=True)
class TokenUsageRecord:
    interception_id: uuid.UUID
    provider_response_id: str
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_write_input_tokens: int
    metadata: dict[str, Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: dt.datetime = field(default_factory=_now)


@dataclass(slots=True)
class PromptRecord:
    interception_id: uuid.UUID
    provider_response_id: str
    prompt: str
    metadata: dict[str, Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: dt.datetime = field(default_factory=_now)


@dataclass(slots=True)
class ToolUsageRecord:
    interception_id: uuid.UUID
    provider_response_id: str
    provider_tool_call_id: str
    tool: str
    input: str
    injected: bool
    server_url: str | None
    invocation_error: str | None
    metadata: dict[str, Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: dt.datetime = field(default_factory=_now)


@dataclass(slots=True)
class ThoughtRecord:
    interception_id: uuid.UUID
    content: str
    metadata: dict[str, Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: dt.datetime = field(default_factory=_now)


Record = (InterceptionStart | InterceptionEnd | TokenUsageRecord | PromptRecord | ToolUsageRecord
          | ThoughtRecord)
