"""Groups (DESIGN §2.6): owners write, auditors read, members read only their own groups; and
Coder's budget routes for groups and users (``…/ai/budget``, monthly, in micro-dollars).

A group is a subject of budgets and model rules: every change bumps the governance generation
(store/groups.py) and is published before the call returns, so it applies on every worker at once.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from aibridge.rest.common import APIError, actor, audited, json_body, json_response, require, string_field
from aibridge.server_keys import CHANGES, ENGINE, GOVERNANCE
from aibridge.store import governance as gov_store
from aibridge.store import groups as store
from aibridge.store import users as user_store
from aibridge.store.audit import Change, diff
from aibridge.store.groups import Group

READERS = ("owner", "auditor")
MAX_LIMIT_MICROS = 1_000_000 * gov_store.MICROS        # Coder's cap: $1,000,000 per member per period


def _storable(value: str, what: str, status: int = 400) -> str:
    """PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database."""
    if "\x00" in value:
        raise APIError(status, f"{what} must not contain NUL characters")
    return value


async def _group(request: web.Request) -> Group:
    """The group named in the path (id or name); a member sees only its own groups (others: 404)."""
    ref = _storable(request.match_info["group"], "a group name", 404)
    engine = request.app[ENGINE]
    group = await store.get_group(engine, ref)
    current = actor(request)
    if group is None or (not current.reads_all_records
                         and group.name not in await store.user_group_names(engine, current.id)):
        raise APIError(404, f"group {ref!r} not found")
    return group


async def _described(request: web.Request, group: Group) -> dict[str, Any]:
    return group.to_json(await store.members(request.app[ENGINE], group))


async def list_groups(request: web.Request) -> web.Response:
    current = actor(request)
    engine = request.app[ENGINE]
    found = await store.list_groups(engine)
    if not current.reads_all_records:
        mine = set(await store.user_group_names(engine, current.id))
        found = [(g, n) for g, n in found if g.name in mine]
    groups = [{**g.to_json(), "total_member_count": n} for g, n in found]
    return json_response({"groups": groups, "count": len(groups)})


def _fields(group: Group, members: list[str] | None = None) -> dict[str, Any]:
    """What the audit log compares of a group."""
    found: dict[str, Any] = {"name": group.name, "display_name": group.display_name}
    if members is not None:
        found["members"] = members
    return found


async def create_group(request: web.Request) -> web.Response:
    async with audited(request, "create", "group") as change:
        require(request, "owner")
        body = await json_body(request)
        name = string_field(body, "name")
        change.resource_target = name[:256]
        display_name = _storable(string_field(body, "display_name"), "display_name")
        try:
            store.validate_group_name(name)
            group = await store.create_group(change.conn, name, display_name[:128])
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        except user_store.Conflict as exc:
            raise APIError(409, str(exc)) from None
        change.resource_id = str(group.id)
        change.diff = diff(None, _fields(group))
    await request.app[CHANGES].publish()
    return json_response(group.to_json([]), 201)


async def get_group(request: web.Request) -> web.Response:
    return json_response(await _described(request, await _group(request)))


async def _user_ids(request: web.Request, body: dict[str, Any], key: str) -> list[uuid.UUID]:
    refs = body.get(key) or []
    if not isinstance(refs, list) or not all(isinstance(r, str) and r.strip() for r in refs):
        raise APIError(400, f"{key} must be a list of user ids or usernames")
    found = []
    for ref in (_storable(r, key) for r in refs):
        try:
            found.append((await user_store.get_user(request.app[ENGINE], ref.strip())).id)
        except user_store.NotFound as exc:
            raise APIError(404, str(exc)) from None
    return found


async def patch_group(request: web.Request) -> web.Response:
    """``{add_users, remove_users, name?, display_name?}``, applied together or not at all."""
    async with audited(request, "write", "group", resource_target=request.match_info["group"][:256]) as change:
        require(request, "owner")
        group = await _group(request)
        change.resource_id, change.resource_target = str(group.id), group.name
        before = _fields(group, [m["username"] for m in await store.members(change.conn, group)])
        body = await json_body(request)
        added = await _user_ids(request, body, "add_users")
        removed = await _user_ids(request, body, "remove_users")
        name = string_field(body, "name") if body.get("name") is not None else None
        display_name = (_storable(string_field(body, "display_name"), "display_name")[:128]
                        if body.get("display_name") is not None else None)
        try:
            if name is not None or display_name is not None:
                group = await store.update_group(change.conn, str(group.id), name=name, display_name=display_name)
            await store.add_members(change.conn, group, added)
            await store.remove_members(change.conn, group, removed)
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        except user_store.Conflict as exc:
            raise APIError(409, str(exc)) from None
        change.diff = diff(before, _fields(group, [m["username"] for m in await store.members(change.conn, group)]))
    await request.app[CHANGES].publish()
    return json_response(await _described(request, group))


async def delete_group(request: web.Request) -> web.Response:
    async with audited(request, "delete", "group", resource_target=request.match_info["group"][:256]) as change:
        require(request, "owner")
        group = await _group(request)
        change.resource_id, change.resource_target = str(group.id), group.name
        await store.delete_group(change.conn, str(group.id))
        change.diff = diff(_fields(group), None)
    await request.app[CHANGES].publish()
    return web.Response(status=204)


# ---------------------------------------------------------------- Coder's budget routes

def _limit_micros(body: dict[str, Any]) -> int:
    value = body.get("spend_limit_micros")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT_MICROS:
        raise APIError(400, "spend_limit_micros must be an integer from 0 to 1000000000000 "
                            "(micro-dollars per member per month)")
    return value


async def _set_monthly(change: Change, scope: str, subject: str, micros: int) -> None:
    """Coder's budgets are monthly; the audit row carries the stored budget before and after."""
    before = await gov_store.stored(change.conn, "budget", scope=scope, subject=subject)
    await gov_store.set_budget(change.conn, scope, subject, "month", micros / gov_store.MICROS)
    change.diff = diff(before, await gov_store.stored(change.conn, "budget", scope=scope, subject=subject))


async def _delete(change: Change, scope: str, subject: str) -> None:
    before = await gov_store.stored(change.conn, "budget", scope=scope, subject=subject)
    if not await gov_store.delete_budget(change.conn, scope, subject):
        raise APIError(404, f"no budget set by an owner for {scope} {subject!r}")
    change.diff = diff(before, None)


async def _budget_json(request: web.Request, scope: str, subject: str, **ids: str) -> dict[str, Any]:
    budget = (await request.app[GOVERNANCE].rules()).budgets.get((scope, subject))
    if budget is None:
        raise APIError(404, f"no budget for {scope} {subject!r}")
    return {**ids, "spend_limit_micros": gov_store.to_micros(budget.limit_usd), "period": budget.period,
            "source": budget.source}


async def put_group_budget(request: web.Request) -> web.Response:
    async with audited(request, "write", "budget", resource_target=f"group:{request.match_info['group']}"[:256]) \
            as change:
        require(request, "owner")
        group = await _group(request)
        change.resource_target = f"group:{group.name}"
        micros = _limit_micros(await json_body(request))
        await _set_monthly(change, "group", group.name, micros)
    await request.app[CHANGES].publish()
    return json_response({"group_id": str(group.id), "spend_limit_micros": micros, "period": "month",
                          "source": "owner"})


async def get_group_budget(request: web.Request) -> web.Response:
    require(request, *READERS)
    group = await _group(request)
    return json_response(await _budget_json(request, "group", group.name, group_id=str(group.id)))


async def delete_group_budget(request: web.Request) -> web.Response:
    async with audited(request, "delete", "budget", resource_target=f"group:{request.match_info['group']}"[:256]) \
            as change:
        require(request, "owner")
        group = await _group(request)
        change.resource_target = f"group:{group.name}"
        await _delete(change, "group", group.name)
    await request.app[CHANGES].publish()
    return web.Response(status=204)


async def _budget_user(request: web.Request) -> user_store.User:
    ref = _storable(request.match_info["user"], "a user", 404)
    current = actor(request)
    if ref not in ("me", current.username, str(current.id)):
        require(request, *READERS)
    try:
        return await user_store.get_user(request.app[ENGINE], str(current.id) if ref == "me" else ref)
    except user_store.NotFound as exc:
        raise APIError(404, str(exc)) from None


async def put_user_budget(request: web.Request) -> web.Response:
    """Coder's per-user override ``{group_id, spend_limit_micros}``: a monthly budget of the user's
    own, which beats its groups'. ``group_id`` (Coder's attribution) must name one of the user's
    groups when given; it is checked, not stored (spend is counted per user here)."""
    async with audited(request, "write", "budget", resource_target=f"user:{request.match_info['user']}"[:256]) \
            as change:
        require(request, "owner")
        user = await _budget_user(request)
        change.resource_target = f"user:{user.username}"
        body = await json_body(request)
        micros = _limit_micros(body)
        group_ref = body.get("group_id")
        if group_ref is not None:
            group = await store.get_group(change.conn, _storable(str(group_ref), "group_id"))
            if group is None:
                raise APIError(404, f"group {group_ref!r} not found")
            if group.name not in await store.user_group_names(change.conn, user.id):
                raise APIError(400, f"user {user.username!r} is not a member of group {group.name!r}")
        await _set_monthly(change, "user", user.username, micros)
    await request.app[CHANGES].publish()
    return json_response({"user_id": str(user.id), "group_id": None if group_ref is None else str(group_ref),
                          "spend_limit_micros": micros, "period": "month", "source": "owner"})


async def get_user_budget(request: web.Request) -> web.Response:
    user = await _budget_user(request)
    return json_response(await _budget_json(request, "user", user.username, user_id=str(user.id)))


async def delete_user_budget(request: web.Request) -> web.Response:
    async with audited(request, "delete", "budget", resource_target=f"user:{request.match_info['user']}"[:256]) \
            as change:
        require(request, "owner")
        user = await _budget_user(request)
        change.resource_target = f"user:{user.username}"
        await _delete(change, "user", user.username)
    await request.app[CHANGES].publish()
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v2/groups", list_groups)
    app.router.add_post("/api/v2/groups", create_group)
    app.router.add_get("/api/v2/groups/{group}", get_group)
    app.router.add_patch("/api/v2/groups/{group}", patch_group)
    app.router.add_delete("/api/v2/groups/{group}", delete_group)
    for path, handlers in (("/api/v2/groups/{group}/ai/budget", (get_group_budget, put_group_budget,
                                                                 delete_group_budget)),
                           ("/api/v2/users/{user}/ai/budget", (get_user_budget, put_user_budget,
                                                               delete_user_budget)),
                           # Coder's own path of the per-user override
                           ("/api/v2/users/{user}/ai/budget/override", (get_user_budget, put_user_budget,
                                                                        delete_user_budget))):
        get, put, delete = handlers
        app.router.add_get(path, get)
        app.router.add_put(path, put)
        app.router.add_delete(path, delete)
