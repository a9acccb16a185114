"""Sessions and their threads, in Coder's shape (DESIGN §2.6).

A session is the interceptions sharing a client session id (``X-Claude-Code-Session-Id`` and the
like) under one initiator. A *thread* is one human prompt and the agent loop after it: an
interception starts a new thread when it is the session's first, or when it recorded a prompt
(``aibridge_user_prompts``) whose text differs from the previous interception's prompt. The API
readers record as the prompt the last user message's text, never a tool result: Anthropic's
tool round trips end in ``tool_result`` blocks and record no prompt; Chat Completions and
Responses resend the same user message through the loop, hence "differs from the previous".
Each interception of a thread is one *agentic action* (its token usage, thinking and tool calls).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.util import ClauseAdapter

from aibridge.store.export import Filters
from aibridge.store.schema import interceptions, model_thoughts, token_usages, tool_usages, user_prompts, users
from aibridge.store.users import iso

c = interceptions.c
_ORDER = (c.started_at, c.id)


class UnknownThread(Exception):
    pass


Scope = Callable[[sa.FromClause], list[sa.ColumnElement[bool]]]


def _in_scope(scope: Scope) -> sa.Select[tuple[uuid.UUID]]:
    """The ids of the interceptions in scope: child rows are aggregated for those only."""
    inner = interceptions.alias("scoped")
    return sa.select(inner.c.id).where(*scope(inner))


def _prompts(scope: Scope) -> sa.Subquery:
    p = user_prompts.c
    return (sa.select(p.interception_id, sa.func.max(p.prompt).label("prompt"))
            .where(p.interception_id.in_(_in_scope(scope))).group_by(p.interception_id).subquery())


def _tokens(scope: Scope) -> sa.Subquery:
    t = token_usages.c
    return sa.select(t.interception_id,
                     sa.func.sum(t.input_tokens).label("input_tokens"),
                     sa.func.sum(t.output_tokens).label("output_tokens"),
                     sa.func.sum(t.cache_read_input_tokens).label("cache_read"),
                     sa.func.sum(t.cache_write_input_tokens).label("cache_write"),
                     ).where(t.interception_id.in_(_in_scope(scope))).group_by(t.interception_id).subquery()


def _session_scope(filters: Filters) -> Scope:
    """The sessions with at least one interception matching the filters (the aggregates then
    cover every interception of those sessions, so a model filter does not cut threads short),
    as conditions on the interceptions table or an alias of it."""
    time_free = Filters(**{**vars(filters), "started_after": None, "started_before": None})

    def on(table: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        t, inner = table.c, interceptions.alias("matching")
        matching = sa.select(inner.c.id).where(inner.c.client_session_id == t.client_session_id,
                                               inner.c.initiator_id == t.initiator_id,
                                               _on(inner, time_free)).exists()
        scope: list[sa.ColumnElement[bool]] = [t.client_session_id.is_not(None), t.ended_at.is_not(None), matching]
        if filters.restrict_to is not None:
            scope.append(t.initiator_id == filters.restrict_to)
        return scope
    return on


def _on(table: sa.FromClause, filters: Filters) -> sa.ColumnElement[bool]:
    """The filters' conditions, written against an alias of the interceptions table."""
    return sa.and_(*[_rebind(cond, table) for cond in filters.conditions()])


def _rebind(cond: sa.ColumnElement[bool], table: sa.FromClause) -> sa.ColumnElement[bool]:
    adapted: sa.ColumnElement[bool] = ClauseAdapter(table).traverse(cond)
    return adapted


def _marked(filters: Filters) -> tuple[sa.Subquery, sa.Subquery]:
    """Every interception of the matching sessions, with its prompt and whether it starts a thread;
    and the summed tokens of those interceptions."""
    scope = _session_scope(filters)
    prompts = _prompts(scope)
    partition, order = (c.client_session_id, c.initiator_id), _ORDER
    previous = sa.func.lag(prompts.c.prompt).over(partition_by=partition, order_by=order)
    starts = sa.case((sa.func.row_number().over(partition_by=partition, order_by=order) == 1, 1),
                     (sa.and_(prompts.c.prompt.is_not(None), prompts.c.prompt.is_distinct_from(previous)), 1),
                     else_=0)
    return (sa.select(c.id, c.client_session_id, c.initiator_id, c.client, c.started_at, c.ended_at,
                      prompts.c.prompt, starts.label("starts"))
            .outerjoin(prompts, prompts.c.interception_id == c.id)
            .where(*scope(interceptions)).subquery()), _tokens(scope)


async def list_sessions(engine: AsyncEngine, filters: Filters, limit: int, offset: int,
                        after_session_id: str | None) -> tuple[int, list[dict[str, Any]]]:
    """(count, one page) of sessions, most recently active first."""
    marked, tokens = _marked(filters)
    m = marked.c
    grouped = (sa.select(
        m.client_session_id, m.initiator_id, users.c.username, users.c.name, users.c.deleted,
        sa.func.min(m.client).label("client"),
        sa.func.min(m.started_at).label("started_at"), sa.func.max(m.ended_at).label("ended_at"),
        sa.func.count(m.id).label("interceptions"), sa.func.sum(m.starts).label("threads"),
        *[sa.func.coalesce(sa.func.sum(tokens.c[k]), 0).label(k)
          for k in ("input_tokens", "output_tokens", "cache_read", "cache_write")])
        .join(users, users.c.id == m.initiator_id)
        .outerjoin(tokens, tokens.c.interception_id == m.id)
        .group_by(m.client_session_id, m.initiator_id, users.c.username, users.c.name, users.c.deleted))
    if filters.started_after is not None:
        grouped = grouped.having(sa.func.min(m.started_at) >= filters.started_after)
    if filters.started_before is not None:
        grouped = grouped.having(sa.func.min(m.started_at) < filters.started_before)
    page = grouped.subquery()
    ordered = sa.select(page).order_by(page.c.ended_at.desc(), page.c.client_session_id)
    async with engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(page))).scalar_one()
        if after_session_id is not None:
            cursor = (await conn.execute(sa.select(page.c.ended_at).where(
                page.c.client_session_id == after_session_id).limit(1))).scalar()
            if cursor is None:
                raise UnknownThread(f"after_session_id {after_session_id!r} is not a known session")
            ordered = ordered.where(sa.or_(page.c.ended_at < cursor, sa.and_(
                page.c.ended_at == cursor, page.c.client_session_id > after_session_id)))
        rows = (await conn.execute(ordered.limit(limit).offset(offset))).all()
        extras = await _extras(conn, rows)
    return int(total), [_summary(r, extras.get((r.client_session_id, r.initiator_id), _Extras())) for r in rows]


@dataclass
class _Extras:
    providers: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    last_prompt: str | None = None


async def _extras(conn: AsyncConnection, rows: Sequence[Any]) -> dict[tuple[str, uuid.UUID], _Extras]:
    """Providers, models and last prompt of the page's sessions (one query each, page-sized)."""
    found: dict[tuple[str, uuid.UUID], _Extras] = {}
    keys = {(r.client_session_id, r.initiator_id) for r in rows}
    if not keys:
        return found
    in_page = sa.and_(c.client_session_id.in_({k[0] for k in keys}), c.ended_at.is_not(None))
    for column, name in ((c.provider, "providers"), (c.model, "models")):
        for row in await conn.execute(sa.select(c.client_session_id, c.initiator_id, column).distinct()
                                      .where(in_page).order_by(column)):
            getattr(found.setdefault((row[0], row[1]), _Extras()), name).append(row[2])
    newest = sa.func.row_number().over(partition_by=(c.client_session_id, c.initiator_id),
                                       order_by=(c.started_at.desc(), c.id.desc(), user_prompts.c.created_at.desc()))
    prompts = (sa.select(c.client_session_id, c.initiator_id, user_prompts.c.prompt, newest.label("n"))
               .join(user_prompts, user_prompts.c.interception_id == c.id).where(in_page).subquery())
    for row in await conn.execute(sa.select(prompts.c.client_session_id, prompts.c.initiator_id,
                                            prompts.c.prompt).where(prompts.c.n == 1)):
        found.setdefault((row[0], row[1]), _Extras()).last_prompt = row[2]
    return found


def _initiator(row: Any) -> dict[str, Any]:
    return {"id": str(row.initiator_id), "username": row.username, "name": row.name, "deleted": bool(row.deleted)}


def _usage(input_tokens: int, output_tokens: int, cache_read: int, cache_write: int) -> dict[str, int]:
    return {"input_tokens": int(input_tokens), "output_tokens": int(output_tokens),
            "cache_read_input_tokens": int(cache_read), "cache_write_input_tokens": int(cache_write)}


def _summary(row: Any, extras: _Extras) -> dict[str, Any]:
    return {
        "id": row.client_session_id, "initiator": _initiator(row),
        "providers": extras.providers, "models": extras.models, "client": row.client, "metadata": {},
        "started_at": iso(row.started_at), "ended_at": iso(row.ended_at) if row.ended_at else None,
        "threads": int(row.threads),
        "token_usage_summary": _usage(row.input_tokens, row.output_tokens, row.cache_read, row.cache_write),
        "last_prompt": extras.last_prompt,
        "last_active_at": iso(row.ended_at) if row.ended_at else None,
        "interception_count": int(row.interceptions),
    }


# ---------------------------------------------------------------- one session, its threads

@dataclass
class Page:
    after_id: uuid.UUID | None = None
    before_id: uuid.UUID | None = None
    limit: int = 100


async def get_session(engine: AsyncEngine, session_id: str, restrict_to: uuid.UUID | None,
                      page: Page) -> dict[str, Any] | None:
    """The session (whole-session summary) and one page of its threads, oldest first."""
    async with engine.connect() as conn:
        rows = await _session_rows(conn, session_id, restrict_to)
        if not rows:
            return None
        threads = _split(rows)
        shown = _page(threads, page)
        children = await _children(conn, [row.id for thread in shown for row in thread])
    latest = rows[-1]
    totals = [sum(int(getattr(r, k)) for r in rows) for k in ("input_tokens", "output_tokens", "cache_read",
                                                                "cache_write")]
    return {
        "id": session_id, "initiator": _initiator(latest),
        "providers": sorted({r.provider for r in rows}), "models": sorted({r.model for r in rows}),
        "client": rows[0].client, "metadata": {},
        "started_at": iso(rows[0].started_at), "ended_at": iso(max(r.ended_at for r in rows)),
        "page_started_at": iso(shown[0][0].started_at) if shown else None,
        "page_ended_at": iso(max(r.ended_at for r in shown[-1])) if shown else None,
        "token_usage_summary": _usage(*totals),
        "threads": [_thread(thread, children) for thread in shown],
        "thread_count": len(threads), "interception_count": len(rows),
    }


async def _session_rows(conn: AsyncConnection, session_id: str, restrict_to: uuid.UUID | None) -> list[Any]:
    """One light row per interception (no child rows): its columns, prompt and summed tokens.
    A session id two initiators happen to share is shown for the latest one's."""
    def scope(table: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        t = table.c
        found = [t.client_session_id == session_id, t.ended_at.is_not(None)]
        return found if restrict_to is None else [*found, t.initiator_id == restrict_to]
    conditions = scope(interceptions)
    prompts, tokens = _prompts(scope), _tokens(scope)
    latest = sa.select(c.initiator_id).where(*conditions).order_by(c.started_at.desc(), c.id.desc()).limit(1)
    query = (sa.select(c.id, c.initiator_id, c.provider, c.model, c.client, c.credential_kind,
                       c.credential_hint, c.started_at, c.ended_at, users.c.username, users.c.name,
                       users.c.deleted, prompts.c.prompt,
                       *[sa.func.coalesce(tokens.c[k], 0).label(k)
                         for k in ("input_tokens", "output_tokens", "cache_read", "cache_write")])
             .join(users, users.c.id == c.initiator_id)
             .outerjoin(prompts, prompts.c.interception_id == c.id)
             .outerjoin(tokens, tokens.c.interception_id == c.id)
             .where(*conditions, c.initiator_id == latest.scalar_subquery()).order_by(*_ORDER))
    return list((await conn.execute(query)).all())


def _split(rows: list[Any]) -> list[list[Any]]:
    """The rule in the module's docstring, the same as the list's window function."""
    threads: list[list[Any]] = []
    previous: str | None = None
    for row in rows:
        if not threads or (row.prompt is not None and row.prompt != previous):
            threads.append([])
        threads[-1].append(row)
        previous = row.prompt
    return threads


def _page(threads: list[list[Any]], page: Page) -> list[list[Any]]:
    ids = [thread[0].id for thread in threads]
    start, end = 0, len(threads)
    for cursor, name in ((page.after_id, "after_id"), (page.before_id, "before_id")):
        if cursor is not None and cursor not in ids:
            raise UnknownThread(f"{name} {cursor} is not a thread of this session")
    if page.after_id is not None:
        start = ids.index(page.after_id) + 1
    if page.before_id is not None:
        end = ids.index(page.before_id)
        return threads[max(start, end - page.limit):end]
    return threads[start:min(end, start + page.limit)]


async def _children(conn: AsyncConnection, ids: list[uuid.UUID]) -> dict[str, dict[uuid.UUID, list[Any]]]:
    found: dict[str, dict[uuid.UUID, list[Any]]] = {}
    for key, table in (("tool_calls", tool_usages), ("thinking", model_thoughts)):
        grouped: dict[uuid.UUID, list[Any]] = {i: [] for i in ids}
        if ids:
            for child in await conn.execute(table.select().where(table.c.interception_id.in_(ids))
                                            .order_by(table.c.created_at, table.c.id)):
                grouped[child.interception_id].append(child)
        found[key] = grouped
    return found


def _thread(rows: list[Any], children: dict[str, dict[uuid.UUID, list[Any]]]) -> dict[str, Any]:
    first = rows[0]
    actions = [_action(row, children) for row in rows]
    summed = [sum(a["token_usage"][k] for a in actions) for k in
              ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")]
    return {
        "id": str(first.id), "prompt": first.prompt, "model": first.model, "provider": first.provider,
        "credential_kind": first.credential_kind, "credential_hint": first.credential_hint,
        "started_at": iso(first.started_at), "ended_at": iso(max(r.ended_at for r in rows)),
        "token_usage": _usage(*summed), "agentic_actions": actions,
    }


def _action(row: Any, children: dict[str, dict[uuid.UUID, list[Any]]]) -> dict[str, Any]:
    return {
        "interception_id": str(row.id), "model": row.model,
        "token_usage": _usage(row.input_tokens, row.output_tokens, row.cache_read, row.cache_write),
        "thinking": [{"text": t.content} for t in children["thinking"][row.id]],
        "tool_calls": [_tool_call(t) for t in children["tool_calls"][row.id]],
    }


def _tool_call(row: Any) -> dict[str, Any]:
    return {"id": str(row.id), "interception_id": str(row.interception_id),
            "provider_response_id": row.provider_response_id, "server_url": row.server_url,
            "tool": row.tool, "injected": row.injected, "input": row.input, "metadata": row.metadata or {},
            "created_at": iso(row.created_at),
            "provider_tool_call_id": row.provider_tool_call_id, "invocation_error": row.invocation_error}
