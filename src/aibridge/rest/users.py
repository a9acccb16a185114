"""Users and their API tokens."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from aibridge.governance.addons import budget_status
from aibridge.identity.roles import ROLES
from aibridge.identity.validation import parse_lifetime, validate_email, validate_username
from aibridge.rest.common import APIError, actor, audited, json_body, json_response, require, string_field
from aibridge.server_keys import CHANGES, ENGINE, GOVERNANCE, SETTINGS
from aibridge.store import sso as sso_store
from aibridge.store import users as store
from aibridge.store.audit import diff, token_diff, user_fields
from aibridge.store.groups import user_group_names
from aibridge.store.users import User

DEFAULT_LIFETIME = dt.timedelta(days=30)


async def _target(request: web.Request) -> User:
    """The user named in the path ('me', a username or an id); only owners may name others."""
    ref = request.match_info["user"]
    current = actor(request)
    if ref in ("me", current.username, str(current.id)):
        return await store.get_user(request.app[ENGINE], str(current.id))
    if not current.is_owner:
        raise APIError(403, "forbidden", "only owners can act on other users")
    try:
        return await store.get_user(request.app[ENGINE], ref)
    except store.NotFound as exc:
        raise APIError(404, str(exc)) from None


async def create_user(request: web.Request) -> web.Response:
    async with audited(request, "create", "user") as change:
        require(request, "owner")
        body = await json_body(request)
        username = string_field(body, "username")
        change.resource_target = username
        role = string_field(body, "role", "member")
        email = string_field(body, "email")
        try:
            validate_username(username)
            validate_email(email)
        except ValueError as exc:
            raise APIError(400, str(exc)) from None
        if role not in ROLES:
            raise APIError(400, f"invalid role {role!r}", f"use one of {', '.join(ROLES)}")
        try:
            user = await store.create_user(change.conn, username, role, email, string_field(body, "name"))
        except store.Conflict as exc:
            raise APIError(409, str(exc)) from None
        change.resource_id, change.diff = str(user.id), diff(None, user_fields(user))
    return json_response(user.to_json(), 201)


async def list_users(request: web.Request) -> web.Response:
    require(request, "owner", "auditor")
    flag = request.query.get("include_deleted", "false")
    if flag not in ("true", "false"):
        raise APIError(400, f"invalid include_deleted {flag!r}", "use true or false")
    found = await store.list_users(request.app[ENGINE], include_deleted=flag == "true")
    return json_response({"users": [u.to_json() for u in found], "count": len(found)})


async def get_me(request: web.Request) -> web.Response:
    """The acting user, its groups, and the budget in force for it (``null`` when none applies)."""
    current = actor(request)
    engine = request.app[ENGINE]
    user = await store.get_user(engine, str(current.id))
    budget = await budget_status(request.app[GOVERNANCE], engine, user.username, user.role, user.id)
    return json_response({**user.to_json(), "budget": budget, "login_type": await sso_store.login_type(engine, user.id),
                          "groups": await user_group_names(engine, user.id)})


async def get_user(request: web.Request) -> web.Response:
    ref = request.match_info["user"]
    current = actor(request)
    if ref not in ("me", current.username, str(current.id)):
        require(request, "owner", "auditor")
    try:
        user = await store.get_user(request.app[ENGINE], str(current.id) if ref == "me" else ref)
    except store.NotFound as exc:
        raise APIError(404, str(exc)) from None
    return json_response({**user.to_json(), "groups": await user_group_names(request.app[ENGINE], user.id)})


async def create_token(request: web.Request) -> web.Response:
    async with audited(request, "create", "api_key") as change:
        user = await _target(request)
        change.additional_fields = {"user": user.username}
        body = await json_body(request)
        lifetime_raw = body.get("lifetime")
        if isinstance(lifetime_raw, int | float) and not isinstance(lifetime_raw, bool):
            lifetime_raw = f"{lifetime_raw}s"          # a number is seconds
        if lifetime_raw is not None and not isinstance(lifetime_raw, str):
            raise APIError(400, "invalid lifetime: use a duration such as 720h or 90d")
        try:
            lifetime = parse_lifetime(lifetime_raw) if lifetime_raw else DEFAULT_LIFETIME
        except ValueError as exc:
            raise APIError(400, f"invalid lifetime: {exc}") from None
        try:
            key, token = await store.create_api_key(change.conn, user.id, lifetime,
                                                    string_field(body, "token_name"),
                                                    request.app[SETTINGS].max_tokens_per_user)
        except store.TooManyTokens as exc:
            raise APIError(409, f"cannot create a token for user {user.username!r}: {exc}",
                           exc.HINT.replace("{user}", user.username)) from None
        change.resource_id, change.resource_target = key.id, key.name
        change.diff = token_diff(key, token)
    return json_response({"key": token, "id": key.id, "expires_at": key.to_json()["expires_at"]}, 201)


async def list_tokens(request: web.Request) -> web.Response:
    user = await _target(request)
    keys = await store.list_api_keys(request.app[ENGINE], user.id)
    return json_response([k.to_json() for k in keys])


async def delete_token(request: web.Request) -> web.Response:
    token_id = request.match_info["id"]
    async with audited(request, "delete", "api_key", resource_id=token_id, resource_target=token_id) as change:
        user = await _target(request)
        change.additional_fields = {"user": user.username}
        try:
            await store.revoke_api_key(change.conn, token_id, user.id)
        except store.NotFound as exc:
            raise APIError(404, str(exc)) from None
        change.diff = diff({"revoked": False}, {"revoked": True})
    await request.app[CHANGES].publish()
    return web.Response(status=204)


async def _other_user(request: web.Request) -> User:
    """The user an owner acts on for off-boarding (never the owner itself: it would lock itself out)."""
    current = require(request, "owner")
    ref = request.match_info["user"]
    try:
        user = await store.get_user(request.app[ENGINE], str(current.id) if ref == "me" else ref)
    except store.NotFound as exc:
        raise APIError(404, str(exc)) from None
    if user.id == current.id:
        raise APIError(400, "you cannot suspend or delete yourself", "ask another owner")
    return user


async def set_status(request: web.Request) -> web.Response:
    """Its tokens stop (or start again) working on every worker before this answers (DESIGN §2.6)."""
    action = request.match_info["action"]
    async with audited(request, "write", "user", resource_target=request.match_info["user"]) as change:
        change.description = f"{action} user"
        user = await _other_user(request)
        change.resource_id, change.resource_target = str(user.id), user.username
        await store.set_suspended(change.conn, user.id, action == "suspend")
        change.diff = diff({"status": user_fields(user)["status"]},
                           {"status": "suspended" if action == "suspend" else "active"})
    await request.app[CHANGES].publish()
    return json_response((await store.get_user(request.app[ENGINE], str(user.id))).to_json())


async def delete_user(request: web.Request) -> web.Response:
    """Marked deleted, its tokens revoked in the same transaction; its records stay attributed to it."""
    async with audited(request, "delete", "user", resource_target=request.match_info["user"]) as change:
        user = await _other_user(request)
        change.resource_id, change.resource_target = str(user.id), user.username
        try:
            await store.delete_user(change.conn, user.id)
        except store.NotFound as exc:        # deleted meanwhile by another request
            raise APIError(404, str(exc)) from None
        change.diff = diff(user_fields(user), None)
    await request.app[CHANGES].publish()
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v2/users", create_user)
    app.router.add_get("/api/v2/users", list_users)
    app.router.add_get("/api/v2/users/me", get_me)
    app.router.add_get("/api/v2/users/{user}", get_user)
    app.router.add_post("/api/v2/users/{user}/keys/tokens", create_token)
    app.router.add_get("/api/v2/users/{user}/keys/tokens", list_tokens)
    app.router.add_delete("/api/v2/users/{user}/keys/{id}", delete_token)
    app.router.add_post("/api/v2/users/{user}/status/{action:suspend|activate}", set_status)
    app.router.add_delete("/api/v2/users/{user}", delete_user)
