"""Queries for governance: price overrides, budgets, model rules, the budget ledger and spend.

The ledger holds, per user and budget period, what was spent (settled) and what requests in
flight hold (reserved), in micro-dollars. Every change is one conditional ``UPDATE`` on one row,
so concurrent requests on any number of workers and replicas see each other's reservations
(PostgreSQL row locks; SQLite's single writer).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store import groups as group_store
from aibridge.store.changes import GOVERNANCE, bump
from aibridge.store.schema import (
    budget_usage,
    budgets,
    group_members,
    groups,
    interceptions,
    model_aliases,
    model_allow,
    prices,
    token_usages,
    users,
)
from aibridge.store.tx import Db, begin
from aibridge.store.users import now

MICROS = 1_000_000


def to_micros(usd: float) -> int:
    return round(usd * MICROS)


def _upsert(conn: AsyncConnection, table: sa.Table, values: dict[str, Any], keys: Sequence[str]) -> Any:
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = module.insert(table).values(**values)
    return statement.on_conflict_do_update(index_elements=list(keys),
                                           set_={k: v for k, v in values.items() if k not in keys})


# ---------------------------------------------------------------- rules (small tables, read whole)

@dataclass(frozen=True)
class StoredRules:
    prices: dict[str, tuple[float, float, float, float]]     # pattern → input, output, cache read, cache write
    budgets: dict[tuple[str, str], tuple[str, float]]        # (scope, subject) → period, limit
    allow: dict[tuple[str, str], list[str]]                  # (scope, subject) → patterns
    aliases: dict[tuple[str, str], str]                      # (from, provider) → to
    # user id → group names: which group budgets and rules apply to whom, known without a read per request
    memberships: dict[uuid.UUID, list[str]] = field(default_factory=dict)


async def load_rules(engine: AsyncEngine) -> StoredRules:
    async with engine.connect() as conn:
        price_rows = (await conn.execute(prices.select())).all()
        budget_rows = (await conn.execute(budgets.select())).all()
        allow_rows = (await conn.execute(model_allow.select())).all()
        alias_rows = (await conn.execute(model_aliases.select())).all()
        members = await group_store.memberships(conn)
    return StoredRules(memberships=members,
        prices={r.model: (r.input, r.output, r.cache_read, r.cache_write) for r in price_rows},
        budgets={(r.scope, r.subject): (r.period, r.limit_usd) for r in budget_rows},
        allow={(r.scope, r.subject): list(r.patterns) for r in allow_rows},
        aliases={(r.from_model, r.provider): r.to_model for r in alias_rows})


async def set_price(engine: Db, model: str, values: tuple[float, float, float, float]) -> None:
    row = dict(zip(("input", "output", "cache_read", "cache_write"), values, strict=True))
    async with begin(engine) as conn:
        await conn.execute(_upsert(conn, prices, {"model": model, **row, "updated_at": now()}, ["model"]))
        await bump(conn, GOVERNANCE)


async def delete_price(engine: Db, model: str) -> bool:
    async with begin(engine) as conn:
        deleted = (await conn.execute(prices.delete().where(prices.c.model == model))).rowcount > 0
        await bump(conn, GOVERNANCE)
        return deleted


async def set_budget(engine: Db, scope: str, subject: str, period: str, limit_usd: float) -> None:
    async with begin(engine) as conn:
        await conn.execute(_upsert(conn, budgets, {"scope": scope, "subject": subject, "period": period,
                                                   "limit_usd": limit_usd, "updated_at": now()},
                                   ["scope", "subject"]))
        await bump(conn, GOVERNANCE)


async def delete_budget(engine: Db, scope: str, subject: str) -> bool:
    async with begin(engine) as conn:
        result = await conn.execute(budgets.delete().where(budgets.c.scope == scope, budgets.c.subject == subject))
        await bump(conn, GOVERNANCE)
        return result.rowcount > 0


async def set_allowed(engine: Db, scope: str, subject: str, patterns: list[str] | None) -> None:
    """``None``: no rule (every model)."""
    async with begin(engine) as conn:
        if patterns is None:
            await conn.execute(model_allow.delete().where(model_allow.c.scope == scope,
                                                          model_allow.c.subject == subject))
        else:
            await conn.execute(_upsert(conn, model_allow, {"scope": scope, "subject": subject, "patterns": patterns,
                                                           "updated_at": now()}, ["scope", "subject"]))
        await bump(conn, GOVERNANCE)


async def set_alias(engine: Db, from_model: str, provider: str, to_model: str | None) -> None:
    """``to_model`` None removes the alias."""
    async with begin(engine) as conn:
        if to_model is None:
            await conn.execute(model_aliases.delete().where(model_aliases.c.from_model == from_model,
                                                            model_aliases.c.provider == provider))
        else:
            await conn.execute(_upsert(conn, model_aliases, {"from_model": from_model, "provider": provider,
                                                             "to_model": to_model, "updated_at": now()},
                                       ["from_model", "provider"]))
        await bump(conn, GOVERNANCE)


# ---------------------------------------------------------------- the ledger

@dataclass(frozen=True)
class Ledger:
    spent: int          # micro-dollars
    reserved: int


def _row(user_id: uuid.UUID, period: str, start: dt.datetime) -> sa.ColumnElement[bool]:
    c = budget_usage.c
    return sa.and_(c.user_id == user_id, c.period == period, c.period_start == start)


def _counted(include_byok: bool) -> sa.ColumnElement[bool]:
    """The interceptions a budget counts: all, or (``--aibridge-budget-include-byok=false``) those
    that went upstream with the central key."""
    return sa.true() if include_byok else interceptions.c.credential_kind != "byok"


async def _ensure_row(conn: AsyncConnection, user_id: uuid.UUID, period: str, start: dt.datetime,
                      seed: bool = False, include_byok: bool = True) -> None:
    """The period's ledger row. ``seed``: a new row starts from what the records say the user spent
    since the period began (a budget set mid-period counts the spend before it, as ``spend`` does)."""
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    spent: sa.ColumnElement[Any] | int = 0
    if seed:
        c = interceptions.c
        spent = (sa.select(sa.cast(sa.func.round(sa.func.coalesce(sa.func.sum(c.cost_usd), 0.0) * MICROS),
                                   sa.BigInteger))
                 .where(c.initiator_id == user_id, c.started_at >= start, c.ended_at.is_not(None),
                        _counted(include_byok))
                 .scalar_subquery())
    await conn.execute(module.insert(budget_usage).values(
        user_id=user_id, period=period, period_start=start, spent_micros=spent, reserved_micros=0, notified=0,
    ).on_conflict_do_nothing())


async def reserve(engine: AsyncEngine, user_id: uuid.UUID, period: str, start: dt.datetime, amount: int,
                  limit: int, include_byok: bool = True) -> tuple[bool, Ledger]:
    """Hold ``amount`` if it fits under ``limit`` — or if nothing else is held and something is left
    (so one request at a time always goes through while the budget is not used up)."""
    c = budget_usage.c
    fits = sa.or_(c.spent_micros + c.reserved_micros + amount <= limit,
                  sa.and_(c.reserved_micros == 0, c.spent_micros < limit))
    async with engine.begin() as conn:
        for _ in range(2):
            held = (await conn.execute(
                budget_usage.update().where(_row(user_id, period, start), fits)
                .values(reserved_micros=c.reserved_micros + amount)
                .returning(c.spent_micros, c.reserved_micros))).first()
            if held is not None:
                return True, Ledger(held.spent_micros, held.reserved_micros)
            found = (await conn.execute(sa.select(c.spent_micros, c.reserved_micros)
                                        .where(_row(user_id, period, start)))).first()
            if found is not None:
                return False, Ledger(found.spent_micros, found.reserved_micros)
            await _ensure_row(conn, user_id, period, start, seed=True, include_byok=include_byok)
    return False, Ledger(0, 0)       # not reached: the row exists after the first round


async def settle(engine: AsyncEngine, user_id: uuid.UUID, period: str, start: dt.datetime, reserved: int,
                 cost: int) -> int:
    """Replace a reservation by the real cost; the period's spend after it."""
    c = budget_usage.c
    async with engine.begin() as conn:
        await _ensure_row(conn, user_id, period, start)
        spent = (await conn.execute(
            budget_usage.update().where(_row(user_id, period, start))
            .values(spent_micros=c.spent_micros + cost,
                    reserved_micros=sa.case((c.reserved_micros >= reserved, c.reserved_micros - reserved), else_=0))
            .returning(c.spent_micros))).scalar_one()
        return int(spent)


async def mark_notified(engine: AsyncEngine, user_id: uuid.UUID, period: str, start: dt.datetime,
                        level: int) -> bool:
    """True for the one caller (on any replica) that first reports ``level`` for this period."""
    c = budget_usage.c
    async with engine.begin() as conn:
        result = await conn.execute(budget_usage.update().where(_row(user_id, period, start), c.notified < level)
                                    .values(notified=level))
        return result.rowcount > 0


async def ledger(engine: AsyncEngine, user_id: uuid.UUID, period: str, start: dt.datetime) -> Ledger:
    c = budget_usage.c
    async with engine.connect() as conn:
        found = (await conn.execute(sa.select(c.spent_micros, c.reserved_micros)
                                    .where(_row(user_id, period, start)))).first()
    return Ledger(found.spent_micros, found.reserved_micros) if found else Ledger(0, 0)


# ---------------------------------------------------------------- spend and usage aggregates

GROUPS = ("user", "group", "model", "day", "provider", "client")
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")


def _day(conn: AsyncConnection) -> sa.ColumnElement[str]:
    started = interceptions.c.started_at
    if conn.dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", started), "YYYY-MM-DD")
    return sa.func.substr(started, 1, 10)        # stored as UTC text "YYYY-MM-DD HH:MM:SS"


def _user_label() -> sa.ColumnElement[str]:
    """The username; a deleted user's says so (its name may belong to a new user now)."""
    return sa.case((users.c.deleted, users.c.username + " (deleted)"), else_=users.c.username)


def _tokens_per_interception() -> sa.Subquery:
    t = token_usages.c
    return (sa.select(t.interception_id, *(sa.func.sum(t[k]).label(k) for k in TOKEN_COLUMNS))
            .group_by(t.interception_id).subquery())


async def spend(engine: AsyncEngine, group_by: Sequence[str], since: dt.datetime | None,
                until: dt.datetime | None, restrict_to: uuid.UUID | None,
                include_byok: bool = True) -> list[dict[str, Any]]:
    """Cost, request count and tokens of finished interceptions started in [since, until), grouped;
    biggest cost first. The one place spend is computed: the spend export, the UI's Usage and Cost
    tabs and ``users/me``'s budget all read it."""
    c = interceptions.c
    tokens = _tokens_per_interception()
    async with engine.connect() as conn:
        columns: dict[str, sa.ColumnElement[Any]] = {
            "user": _user_label(), "group": groups.c.name, "model": c.model, "day": _day(conn),
            "provider": c.provider_name, "client": c.client}
        keys = [columns[g].label(g) for g in group_by]
        sums = [sa.func.coalesce(sa.func.sum(tokens.c[k]), 0).label(k) for k in TOKEN_COLUMNS]
        query = (sa.select(*keys, sa.func.coalesce(sa.func.sum(c.cost_usd), 0.0).label("cost_usd"),
                           sa.func.count(c.id).label("requests"),
                           sa.func.count(c.id).filter(c.cost_usd.is_(None)).label("unpriced_requests"), *sums)
                 .join(users, users.c.id == c.initiator_id)
                 .outerjoin(tokens, tokens.c.interception_id == c.id)
                 .where(c.ended_at.is_not(None), _counted(include_byok)))
        if "group" in group_by:     # the groups the user is in now; in several: counted under each; none: null
            query = (query.outerjoin(group_members, group_members.c.user_id == c.initiator_id)
                     .outerjoin(groups, groups.c.id == group_members.c.group_id))
        if since is not None:
            query = query.where(c.started_at >= since)
        if until is not None:
            query = query.where(c.started_at < until)
        if restrict_to is not None:
            query = query.where(c.initiator_id == restrict_to)
        if keys:
            query = query.group_by(*keys).order_by(sa.desc("cost_usd"), *keys)
        rows = (await conn.execute(query)).all()
    return [{**{g: getattr(r, g) for g in group_by}, "cost_usd": round(float(r.cost_usd), 6),
             "requests": int(r.requests), "unpriced_requests": int(r.unpriced_requests),
             **{k: int(getattr(r, k)) for k in TOKEN_COLUMNS}} for r in rows]


async def spent_usd(engine: AsyncEngine, user_id: uuid.UUID, since: dt.datetime, until: dt.datetime,
                    include_byok: bool = True) -> float:
    """What one user spent in [since, until) as its budget counts it: the ``spend`` export's total
    for it (less its BYOK requests when budgets leave them out)."""
    (row,) = await spend(engine, [], since, until, user_id, include_byok)
    return float(row["cost_usd"])


# ---------------------------------------------------------------- current values (for the audit diff)

RULE_TABLES = {"price": prices, "budget": budgets, "allow": model_allow, "alias": model_aliases}


async def stored(conn: AsyncConnection, kind: str, **keys: str) -> dict[str, Any] | None:
    """A rule's stored row (without its timestamp), read in the change's transaction; None if unset."""
    table = RULE_TABLES[kind]
    row = (await conn.execute(table.select().where(*(table.c[k] == v for k, v in keys.items())))).first()
    # str(): the keys are SQLAlchemy quoted_name objects, which orjson refuses as dict keys
    return None if row is None else {str(k): v for k, v in row._asdict().items() if k not in ("updated_at", *keys)}
