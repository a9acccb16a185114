"""Making a record storable before the database (or the journal) sees it.

PostgreSQL text and JSONB cannot hold NUL; no UTF-8 encoder takes a lone surrogate (aiohttp
decodes undecodable header bytes into them); a VARCHAR(n) on PostgreSQL refuses a longer value;
a multi-megabyte string is a mistake or an attack. Each is replaced by something close that
stores: NUL and lone surrogates become U+FFFD, strings are cut to the column's length (text
columns to ``MAX_TEXT`` characters, with a marker saying how much was cut). Values that are
already clean (nearly all) are returned as they are, after a few fast checks.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any

import sqlalchemy as sa

from aibridge.store.records import (
    InterceptionEnd,
    InterceptionStart,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsageRecord,
    ToolUsageRecord,
)
from aibridge.store.schema import interceptions, model_thoughts, token_usages, tool_usages, user_prompts

MAX_TEXT = 1_000_000            # characters of one text value (a prompt, a tool input, a thought)
MAX_JSON_STRING = 100_000       # characters of one string inside metadata
_SURROGATES = re.compile("[\ud800-\udfff]")
_TABLES: dict[type, sa.Table] = {
    InterceptionStart: interceptions, InterceptionEnd: interceptions, TokenUsageRecord: token_usages,
    PromptRecord: user_prompts, ToolUsageRecord: tool_usages, ThoughtRecord: model_thoughts}


def clean_text(value: str, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        marker = f"…[truncated {len(value) - limit} characters]"
        value = value[:max(0, limit - len(marker))] + marker
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = _SURROGATES.sub("\ufffd", value)
    return value


def clean_int(value: int) -> int:
    """Clamped to a signed 64-bit integer (BIGINT, and what JSON encoders take)."""
    return max(-(2**63), min(2**63 - 1, value))


def clean_json(value: Any, depth: int = 0) -> Any:
    """Strings inside JSON (keys too), cleaned; anything that is not JSON becomes its text."""
    if isinstance(value, str):
        return clean_text(value, MAX_JSON_STRING)
    if isinstance(value, int) and not isinstance(value, bool):
        return clean_int(value)
    if value is None or isinstance(value, bool | float):
        return value
    if depth > 32:
        return clean_text(repr(value), MAX_JSON_STRING)
    if isinstance(value, dict):
        return {clean_text(str(k), 256): clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v, depth + 1) for v in value]
    return clean_text(str(value), MAX_JSON_STRING)


def _limits(table: sa.Table) -> dict[str, int]:
    found = {}
    for column in table.columns:
        if isinstance(column.type, sa.String):
            found[column.name] = column.type.length or MAX_TEXT
    return found


_LIMITS = {kind: _limits(table) for kind, table in _TABLES.items()}
_FIELDS = {kind: [f.name for f in dataclasses.fields(kind)] for kind in _TABLES}


def clean_record(record: Record) -> Record:
    """The record with every value storable (a new record only when something had to change)."""
    limits = _LIMITS[type(record)]
    changes: dict[str, Any] = {}
    for name in _FIELDS[type(record)]:
        value = getattr(record, name)
        if isinstance(value, str):
            fixed: Any = clean_text(value, limits.get(name, MAX_TEXT))
        elif isinstance(value, uuid.UUID) and type(value) is not uuid.UUID:
            fixed = uuid.UUID(int=value.int)        # e.g. asyncpg's own UUID type
        elif isinstance(value, int) and not isinstance(value, bool):
            fixed = clean_int(value)
        elif name == "metadata" and value is not None:
            fixed = clean_json(value)
        else:
            continue
        if fixed != value or type(fixed) is not type(value):
            changes[name] = fixed
    return dataclasses.replace(record, **changes) if changes else record
