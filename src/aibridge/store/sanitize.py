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

import orjson
import sqlalchemy as sa

from aibridge.store.records import (
    InterceptionEnd,
    InterceptionStart,
    OwnedObjectRecord,
    PromptRecord,
    Record,
    ThoughtRecord,
    TokenUsageRecord,
    ToolUsageRecord,
)
from aibridge.store.schema import (
    interceptions,
    model_thoughts,
    owned_objects,
    token_usages,
    tool_usages,
    user_prompts,
)

MAX_TEXT = 1_000_000            # characters of one text value (a prompt, a tool input, a thought)
MAX_JSON_STRING = 100_000       # characters of one string inside metadata
_SURROGATES = re.compile("[\ud800-\udfff]")
_TABLES: dict[type, sa.Table] = {
    InterceptionStart: interceptions, InterceptionEnd: interceptions, TokenUsageRecord: token_usages,
    PromptRecord: user_prompts, ToolUsageRecord: tool_usages, ThoughtRecord: model_thoughts,
    OwnedObjectRecord: owned_objects}


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


def _clean_json_already(value: Any) -> bool:
    """Metadata that JSON holds as it is (orjson refuses lone surrogates, non-string keys and
    integers beyond 64 bits), with no NUL and no string long enough to cut: most of it."""
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        return False
    return len(encoded) <= MAX_JSON_STRING and b"\\u0000" not in encoded


def _plan(kind: type, table: sa.Table) -> tuple[tuple[str, str, int], ...]:
    """The fields of a record type that may need cleaning: (name, what, length limit)."""
    plan = []
    for f in dataclasses.fields(kind):
        column = table.columns.get(f.name)
        if f.name == "metadata":
            plan.append((f.name, "json", 0))
        elif column is not None and isinstance(column.type, sa.String):
            plan.append((f.name, "text", column.type.length or MAX_TEXT))
        elif column is not None and isinstance(column.type, sa.Uuid):
            plan.append((f.name, "uuid", 0))
        elif column is not None and isinstance(column.type, sa.Integer | sa.BigInteger):
            plan.append((f.name, "int", 0))
    return tuple(plan)


_PLANS = {kind: _plan(kind, table) for kind, table in _TABLES.items()}
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def clean_record(record: Record) -> Record:
    """The record with every value storable (a new record only when something had to change)."""
    changes: dict[str, Any] = {}
    for name, what, limit in _PLANS[type(record)]:
        value = getattr(record, name)
        if value is None:
            continue
        if what == "text":
            # The clean case, in three quick checks: short enough, no NUL, nothing to look for.
            if type(value) is str and len(value) <= limit and "\x00" not in value and value.isascii():
                continue
            fixed: Any = clean_text(str(value), limit)
        elif what == "int":
            if type(value) is int and _INT_MIN <= value <= _INT_MAX:
                continue
            fixed = clean_int(value) if isinstance(value, int) else value
        elif what == "uuid":
            if type(value) is uuid.UUID:
                continue
            fixed = uuid.UUID(int=value.int) if isinstance(value, uuid.UUID) else value    # e.g. asyncpg's own type
        else:
            if not value or _clean_json_already(value):
                continue
            fixed = clean_json(value)
        if fixed != value or type(fixed) is not type(value):
            changes[name] = fixed
    return dataclasses.replace(record, **changes) if changes else record
