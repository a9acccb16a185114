"""Record types: what the flow hands to the recorder, in the order it happened."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_RAND_B = (1 << 62) - 1


def _random_bits() -> Iterator[int]:
    """80 random bits at a time, drawn from the OS 256 ids' worth at once (one system call, not one per id)."""
    while True:
        block = os.urandom(10 * 256)
        for start in range(0, len(block), 10):
            yield int.from_bytes(block[start:start + 10])


_random = _random_bits()


def _reset_random() -> None:
    global _random
    _random = _random_bits()      # a forked worker must not hand out its parent's ids


os.register_at_fork(after_in_child=_reset_random)


def new_id() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7: 48 bits of Unix milliseconds, then random bits).

    Records get these instead of random (version 4) ids: each new row lands at the end of its
    primary-key and interception-id indexes instead of on a random page, so a batch of a hundred
    interceptions dirties a few pages per index instead of hundreds (SQLite's commit, PostgreSQL's
    WAL and cache). The export orders by time anyway; nothing reads meaning into the id.
    """
    try:
        rand = next(_random)
    except ValueError:              # drawn from two threads at once: the OS directly
        rand = int.from_bytes(os.urandom(10))
    return uuid.UUID(int=(time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (rand >> 68) << 64
                     | 0b10 << 62 | rand & _RAND_B)


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
    credential_kind: str = "centralized"        # or "byok": the user's own key went upstream
    credential_hint: str = ""                   # masked ("sk-ant-…a1b2"), never the key


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
    id: uuid.UUID = field(default_factory=new_id)
    created_at: dt.datetime = field(default_factory=_now)


@dataclass(slots=True)
class PromptRecord:
    interception_id: uuid.UUID
    provider_response_id: str
    prompt: str
    metadata: dict[str, Any]
    id: uuid.UUID = field(default_factory=new_id)
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
    id: uuid.UUID = field(default_factory=new_id)
    created_at: dt.datetime = field(default_factory=_now)


@dataclass(slots=True)
class ThoughtRecord:
    interception_id: uuid.UUID
    content: str
    metadata: dict[str, Any]
    id: uuid.UUID = field(default_factory=new_id)
    created_at: dt.datetime = field(default_factory=_now)


@dataclass(slots=True)
class OwnedObjectRecord:
    """Who made a response or conversation the bridge relayed (``governance/ownership.py``)."""

    id: str                     # resp_… / conv_…
    kind: str                   # "response" | "conversation"
    provider_name: str
    user_id: uuid.UUID
    created_at: dt.datetime = field(default_factory=_now)


Record = (InterceptionStart | InterceptionEnd | TokenUsageRecord | PromptRecord | ToolUsageRecord
          | ThoughtRecord | OwnedObjectRecord)
