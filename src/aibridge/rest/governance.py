"""Governance REST API: prices, budgets, model rules (owners write, auditors read) and spend."""

from __future__ import annotations

import csv
import io
from typing import Any

from aiohttp import web

from aibridge.governance.prices import PRICE_FIELDS, parse_price
from aibridge.governance.rules import SCOPES, check_budget, check_patterns
from aibridge.identity.roles import ROLES
from aibridge.rest.common import APIError, actor, audited, json_body, json_response, require
from aibridge.rest.interceptions import parse_time
from aibridge.server_keys import CHANGES, ENGINE, GOVERNANCE
from aibridge.store import governance as store
from aibridge.store import groups as group_store
from aibridge.store import users as user_store
from aibridge.store.audit import Change, diff

READERS = ("owner", "auditor")


# ---------------------------------------------------------------- prices

async def list_prices(request: web.Request) -> web.Response:
    require(request, *READERS)
    rules = await request.app[GOVERNANCE].rules()
    found = [{"model": model, **price.to_json(), "source": rules.price_sources.get(model, "default")}
             for model, price in sorted(rules.prices.entries.items())]
    return json_response({"prices": found, "count": len(found)})


def _model(request: web.Request) -> str:
    model = request.match_info["model"].strip()
    if not model or len(model) > 256:
        raise APIError(400, "invalid model: give a model name or glob of 1 to 256 characters")
    return model


async def put_price(request: web.Request) -> web.Response:
    async with audited(request, "write", "price", resource_target=request.match_info["model"][:256]) as change:
        require(request, "owner")
        model = _model(request)
        try:
            price = parse_price(await json_body(request), f"price of {model}")
        except ValueError as exc:
            raise APIError(400, str(exc), f"fields: {', '.join(PRICE_FIELDS)} (USD per million tokens)") from None
        old = await store.stored(change.conn, "price", model=model)
        await store.set_price(change.conn, model, price.as_tuple())
        change.diff = diff(old, await store.stored(change.conn, "price", model=model))
    await request.app[CHANGES].publish()
    return json_response({"model": model, **price.to_json(), "source": "owner"})


async def delete_price(request: web.Request) -> web.Response:
    async with audited(request, "delete", "price", resource_target=request.match_info["model"][:256]) as change:
        require(request, "owner")
        model = _model(request)
        old = await store.stored(change.conn, "price", model=model)
        if not await store.delete_price(change.conn, model):
            raise APIError(404, f"no price set by an owner for {model!r}")
        change.diff = diff(old, None)
    await request.app[CHANGES].publish()
    return web.Response(status=204)


# ---------------------------------------------------------------- budgets

async def list_budgets(request: web.Request) -> web.Response:
    require(request, *READERS)
    rules = await request.app[GOVERNANCE].rules()
    found = [b.to_json() for _, b in sorted(rules.budgets.items())]
    return json_response({"budgets": found, "count": len(found)})


async def _subject(request: web.Request, ref: str) -> tuple[str, str]:
    """``user:NAME``, ``group:NAME`` or ``role:ROLE``, checked to exist."""
    scope, sep, subject = ref.partition(":")
    if not sep or scope not in SCOPES or not subject:
        raise APIError(400, f"invalid target {ref!r}", "use user:USERNAME, group:GROUP or role:ROLE")
    if scope == "group":
        group = await group_store.get_group(request.app[ENGINE], subject)
        if group is None:
            raise APIError(404, f"group {subject!r} not found")
        subject = group.name
    if scope == "role" and subject not in ROLES:
        raise APIError(400, f"unknown role {subject!r}", f"use one of {', '.join(ROLES)}")
    if scope == "user":
        try:
            subject = (await user_store.get_user(request.app[ENGINE], subject)).username
        except user_store.NotFound as exc:
            raise APIError(404, str(exc)) from None
    return scope, subject


async def put_budget(request: web.Request) -> web.Response:
    async with audited(request, "write", "budget", resource_target=request.match_info["target"][:256]) as change:
        require(request, "owner")
        scope, subject = await _subject(request, request.match_info["target"])
        change.resource_target = f"{scope}:{subject}"
        body = await json_body(request)
        try:
            period, limit = check_budget(body.get("period"), body.get("limit_usd"), "budget")
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        old = await store.stored(change.conn, "budget", scope=scope, subject=subject)
        await store.set_budget(change.conn, scope, subject, period, limit)
        change.diff = diff(old, {"period": period, "limit_usd": limit})
    await request.app[CHANGES].publish()
    return json_response({"scope": scope, "subject": subject, "period": period, "limit_usd": limit,
                          "source": "owner"})


async def delete_budget(request: web.Request) -> web.Response:
    async with audited(request, "delete", "budget", resource_target=request.match_info["target"][:256]) as change:
        require(request, "owner")
        scope, subject = await _subject(request, request.match_info["target"])
        change.resource_target = f"{scope}:{subject}"
        old = await store.stored(change.conn, "budget", scope=scope, subject=subject)
        if not await store.delete_budget(change.conn, scope, subject):
            raise APIError(404, f"no budget set by an owner for {scope}:{subject}")
        change.diff = diff(old, None)
    await request.app[CHANGES].publish()
    return web.Response(status=204)


# ---------------------------------------------------------------- model rules

async def get_model_rules(request: web.Request) -> web.Response:
    require(request, *READERS)
    return json_response((await request.app[GOVERNANCE].rules()).to_model_rules_json())


async def put_model_rules(request: web.Request) -> web.Response:
    """Upserts the listed entries. ``allow``: ``{user|group|role, models}`` (``models: null`` removes the
    rule: every model); ``aliases``: ``{from, to, provider}`` (``to: null`` removes the alias)."""
    async with audited(request, "write", "model_rule") as change:
        require(request, "owner")
        body = await json_body(request)
        allow, aliases = body.get("allow") or [], body.get("aliases") or []
        if not isinstance(allow, list) or not isinstance(aliases, list) or \
                not all(isinstance(e, dict) for e in [*allow, *aliases]):
            raise APIError(400, "allow and aliases must be lists of objects")
        checked_allow = []
        for i, entry in enumerate(allow):
            scopes = [s for s in SCOPES if entry.get(s)]
            if len(scopes) != 1 or not isinstance(entry[scopes[0]], str):
                raise APIError(400, f"allow[{i}]: name exactly one of user, group or role")
            scope, subject = await _subject(request, f"{scopes[0]}:{entry[scopes[0]]}")
            models = entry.get("models")
            try:
                patterns = None if models is None else check_patterns(models, f"allow[{i}]")
            except ValueError as exc:
                raise APIError(400, str(exc)) from None
            checked_allow.append((scope, subject, patterns))
        checked_aliases = []
        for i, entry in enumerate(aliases):
            source, target, provider = entry.get("from"), entry.get("to"), entry.get("provider") or ""
            if not isinstance(source, str) or not source.strip() or not isinstance(provider, str) or \
                    not (target is None or (isinstance(target, str) and target.strip())):
                raise APIError(400, f"aliases[{i}]: from and to are model names (to: null removes it), "
                                    "provider a provider name")
            checked_aliases.append((source.strip(), provider.strip(), target.strip() if target else None))
        await _apply_model_rules(change, checked_allow, checked_aliases)
    await request.app[CHANGES].publish()
    return json_response((await request.app[GOVERNANCE].rules()).to_model_rules_json())


async def _apply_model_rules(change: Change, allow: list[tuple[str, str, list[str] | None]],
                             aliases: list[tuple[str, str, str | None]]) -> None:
    """Write the checked entries; the diff has one field per entry (``allow user:bob``,
    ``alias claude@anthropic``)."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for scope, subject, patterns in allow:
        key = f"allow {scope}:{subject}"
        found = await store.stored(change.conn, "allow", scope=scope, subject=subject)
        old[key], new[key] = (list(found["patterns"]) if found else None), patterns
        await store.set_allowed(change.conn, scope, subject, patterns)
    for source, provider, target in aliases:
        key = f"alias {source}@{provider}" if provider else f"alias {source}"
        found = await store.stored(change.conn, "alias", from_model=source, provider=provider)
        old[key], new[key] = (found["to_model"] if found else None), target
        await store.set_alias(change.conn, source, provider, target)
    change.diff = diff(old, new)
    change.resource_target = ", ".join(key.split(" ", 1)[1] for key in new)[:256]


# ---------------------------------------------------------------- spend

async def get_spend(request: web.Request) -> web.StreamResponse:
    """Members see their own spend; owners and auditors everyone's."""
    current = actor(request)
    group_by = [g.strip() for g in request.query.get("group_by", "user,model,day").split(",") if g.strip()]
    unknown = [g for g in group_by if g not in store.GROUPS]
    if unknown or len(set(group_by)) != len(group_by):
        raise APIError(400, f"invalid group_by {request.query.get('group_by')!r}",
                       f"a comma-separated list of {', '.join(store.GROUPS)}")
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise APIError(400, f"invalid format {fmt!r}", "use json or csv")
    since = parse_time("since", request.query["since"]) if request.query.get("since") else None
    until = parse_time("until", request.query["until"]) if request.query.get("until") else None
    restrict = None if current.reads_all_records else current.id
    rows = await store.spend(request.app[ENGINE], group_by, since, until, restrict)
    if fmt == "csv":
        return web.Response(text=to_csv(group_by, rows), content_type="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="aibridge-spend.csv"'})
    return json_response({"group_by": group_by, "total_usd": round(sum(r["cost_usd"] for r in rows), 6),
                          "count": len(rows), "results": rows})


def to_csv(group_by: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = [*group_by, "cost_usd", "requests", "unpriced_requests", *store.TOKEN_COLUMNS]
    writer.writerow(columns)
    for row in rows:
        writer.writerow([f"{row[c]:.6f}" if c == "cost_usd" else row[c] for c in columns])
    return out.getvalue()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v2/aibridge/prices", list_prices)
    app.router.add_put("/api/v2/aibridge/prices/{model:.+}", put_price)
    app.router.add_delete("/api/v2/aibridge/prices/{model:.+}", delete_price)
    app.router.add_get("/api/v2/aibridge/budgets", list_budgets)
    app.router.add_put("/api/v2/aibridge/budgets/{target}", put_budget)
    app.router.add_delete("/api/v2/aibridge/budgets/{target}", delete_budget)
    app.router.add_get("/api/v2/aibridge/model-rules", get_model_rules)
    app.router.add_put("/api/v2/aibridge/model-rules", put_model_rules)
    app.router.add_get("/api/v2/aibridge/spend", get_spend)
