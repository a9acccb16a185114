"""Reading records back: the export (interceptions with their children), distinct values (sessions: sessions.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store.schema import (
    interceptions,
    model_thoughts,
    token_usages,
    tool_usages,
    user_prompts,
    users,
)
from aibridge.store.users import iso


@dataclass
class Filters:
    initiator_id: uuid.UUID | None = None
    initiator_username: str | None = None
    provider: str | None = None
    provider_name: str | None = None
    model: str | None = None
    client: str | None = None
    session_id: str | None = None
    started_after: dt.datetime | None = None
    started_before: dt.datetime | None = None
    restrict_to: uuid.UUID | None = None      # members: only their own records, whatever they ask

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        c = interceptions.c
        found: list[sa.ColumnElement[bool]] = [c.ended_at.is_not(None)]
        if self.initiator_id is not None:
            found.append(c.initiator_id == self.initiator_id)
        if self.initiator_username is not None:
            found.append(c.initiator_id.in_(
                sa.select(users.c.id).where(users.c.username == self.initiator_username).scalar_subquery()))
        for column, value in ((c.provider, self.provider), (c.provider_name, self.provider_name),
                              (c.model, self.model), (c.client, self.client),
                              (c.client_session_id, self.session_id)):
            if value is not None:
                found.append(column == value)
        if self.started_after is not None:
            found.append(c.started_at >= self.started_after)
        if self.started_before is not None:
            found.append(c.started_at < self.started_before)
        if self.restrict_to is not None:
            found.append(c.initiator_id == self.restrict_to)
        return found


class UnknownCursor(Exception):
    pass


_SELECT = sa.select(interceptions, users.c.username, users.c.name.label("initiator_name"),
                    users.c.deleted.label("initiator_deleted")).join(users, users.c.id == interceptions.c.initiator_id)


def _initiator(user_id: uuid.UUID, username: str, name: str, deleted: bool) -> dict[str, Any]:
    """Coder's minimal user, plus whether it has been deleted since (its records stay attributed)."""
    return {"id": str(user_id), "username": username, "name": name, "deleted": bool(deleted)}


async def list_interceptions(engine: AsyncEngine, filters: Filters, limit: int,
                             after_id: uuid.UUID | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(count of all matches, one page newest first) — ``started_at DESC, id DESC``."""
    conditions = filters.conditions()
    async with engine.connect() as conn:
        count = (await conn.execute(
            sa.select(sa.func.count()).select_from(interceptions).where(*conditions))).scalar_one()
        page_conditions = list(conditions)
        if after_id is not None:
            page_conditions.append(await _cursor_condition(conn, after_id))
        query = _SELECT.where(*page_conditions).order_by(
            interceptions.c.started_at.desc(), interceptions.c.id.desc()).limit(limit)
        rows = (await conn.execute(query)).all()
        return int(count), await _with_children(conn, rows)


async def _cursor_condition(conn: AsyncConnection, after_id: uuid.UUID) -> sa.ColumnElement[bool]:
    started = (await conn.execute(
        sa.select(interceptions.c.started_at).where(interceptions.c.id == after_id))).scalar()
    if started is None:
        raise UnknownCursor(f"after_id {after_id} is not a known interception")
    c = interceptions.c
    return sa.or_(c.started_at < started, sa.and_(c.started_at == started, c.id < after_id))


async def interceptions_oldest_first(engine: AsyncEngine, filters: Filters) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(_SELECT.where(*filters.conditions()).order_by(
            interceptions.c.started_at, interceptions.c.id))).all()
        return await _with_children(conn, rows)


async def _with_children(conn: AsyncConnection, rows: Sequence[sa.Row[Any]]) -> list[dict[str, Any]]:
    ids = [row.id for row in rows]
    children: dict[str, dict[uuid.UUID, list[dict[str, Any]]]] = {}
    for key, table, shape in (("token_usages", token_usages, _token_usage),
                              ("user_prompts", user_prompts, _user_prompt),
                              ("tool_usages", tool_usages, _tool_usage),
                              ("model_thoughts", model_thoughts, _thought)):
        grouped: dict[uuid.UUID, list[dict[str, Any]]] = {i: [] for i in ids}
        if ids:
            result = await conn.execute(table.select().where(table.c.interception_id.in_(ids))
                                        .order_by(table.c.created_at, table.c.id))
            for child in result:
                grouped[child.interception_id].append(shape(child))
        children[key] = grouped
    return [{**_interception(row), **{key: grouped[row.id] for key, grouped in children.items()}}
            for row in rows]


def _interception(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "initiator": _initiator(row.initiator_id, row.username, row.initiator_name, row.initiator_deleted),
        "provider": row.provider,
        "provider_name": row.provider_name,
        "model": row.model,
        "requested_model": row.requested_model or (row.metadata or {}).get("requested_model") or row.model,
        "cost_usd": row.cost_usd,
        "credential_kind": row.credential_kind,
        "credential_hint": row.credential_hint,
        "client": row.client,
        "client_session_id": row.client_session_id,
        "user_agent": row.user_agent,
        "metadata": row.metadata or {},
        "started_at": iso(row.started_at),
        "ended_at": iso(row.ended_at) if row.ended_at else None,
    }


def _common(row: Any) -> dict[str, Any]:
    return {"id": str(row.id), "interception_id": str(row.interception_id)}


def _token_usage(row: Any) -> dict[str, Any]:
    return {**_common(row), "provider_response_id": row.provider_response_id,
            "input_tokens": row.input_tokens, "output_tokens": row.output_tokens,
            "cache_read_input_tokens": row.cache_read_input_tokens,
            "cache_write_input_tokens": row.cache_write_input_tokens,
            "metadata": row.metadata or {}, "created_at": iso(row.created_at)}


def _user_prompt(row: Any) -> dict[str, Any]:
    return {**_common(row), "provider_response_id": row.provider_response_id, "prompt": row.prompt,
            "metadata": row.metadata or {}, "created_at": iso(row.created_at)}


def _tool_usage(row: Any) -> dict[str, Any]:
    return {**_common(row), "provider_response_id": row.provider_response_id,
            "provider_tool_call_id": row.provider_tool_call_id, "server_url": row.server_url,
            "tool": row.tool, "input": row.input, "injected": row.injected,
            "invocation_error": row.invocation_error, "metadata": row.metadata or {},
            "created_at": iso(row.created_at)}


def _thought(row: Any) -> dict[str, Any]:
    return {**_common(row), "content": row.content, "metadata": row.metadata or {},
            "created_at": iso(row.created_at)}


# ---------------------------------------------------------------- distinct values

async def distinct_values(engine: AsyncEngine, column: str, restrict_to: uuid.UUID | None) -> list[str]:
    col = interceptions.c[column]
    query = sa.select(col).distinct().where(col != "").order_by(col)
    if restrict_to is not None:
        query = query.where(interceptions.c.initiator_id == restrict_to)
    async with engine.connect() as conn:
        return [row[0] for row in await conn.execute(query)]
