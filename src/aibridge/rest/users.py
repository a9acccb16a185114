"""Users and their API tokens."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from aibridge.governance.addons import budget_status
from aibridge.identity.roles import ROLES
from aibridge.identity.validation import parse_lifetime, validate_email, validate_username
from aibridge.rest import setup
from aibridge.rest.common import APIError, actor, audited, json_body, json_response, require, string_field
from aibridge.server_keys import CHANGES, ENGINE, GOVERNANCE, SETTINGS
from aibridge.store import sso as sso_store
from aibridge.store import users as store
from aibridge.store.audit import diff, token_diff, user_fields
from aibridge.store.groups import memberships, user_group_names
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
    """Every living user (``include_deleted=true``: the deleted ones too) with its group names; ``q``
    keeps those whose username, e-mail or name contains it."""
    require(request, "owner", "auditor")
    flag = request.query.get("include_deleted", "false")
    if flag not in ("true", "false"):
        raise APIError(400, f"invalid include_deleted {flag!r}", "use true or false")
    engine = request.app[ENGINE]
    found = await store.list_users(engine, include_deleted=flag == "true")
    q = request.query.get("q", "").strip().lower()
    if q:
        found = [u for u in found if q in u.username.lower() or q in u.email.lower() or q in u.name.lower()]
    async with engine.connect() as conn:
        groups = await memberships(conn)
    rows = [{**u.to_json(), "groups": sorted(groups.get(u.id, []))} for u in found]
    return json_response({"users": rows, "count": len(rows)})


async def get_me(request: web.Request) -> web.Response:
    """The acting user, its groups, and the budget in force for it (``null`` when none applies)."""
    current = actor(request)
    engine = request.app[ENGINE]
    user = await store.get_user(engine, str(current.id))
    budget = await budget_status(request.app[GOVERNANCE], engine, user.username, user.role, user.id,
                                 request.app[SETTINGS].aibridge_budget_include_byok)
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


def _lifetime(body: dict[str, object], cap_seconds: float) -> dt.timedelta:
    """The asked lifetime (a duration, or a number of seconds), at most ``CODER_MAX_TOKEN_LIFETIME``."""
    cap = dt.timedelta(seconds=cap_seconds) if cap_seconds > 0 else dt.timedelta.max
    lifetime_raw = body.get("lifetime")
    if isinstance(lifetime_raw, int | float) and not isinstance(lifetime_raw, bool):
        lifetime_raw = f"{lifetime_raw}s"          # a number is seconds
    if lifetime_raw is not None and not isinstance(lifetime_raw, str):
        raise APIError(400, "invalid lifetime: use a duration such as 720h or 90d")
    if not lifetime_raw:
        return min(DEFAULT_LIFETIME, cap)
    try:
        lifetime = parse_lifetime(lifetime_raw)
    except ValueError as exc:
        raise APIError(400, f"invalid lifetime: {exc}") from None
    if lifetime > cap:
        hours = f"{cap_seconds / 3600:g}h"
        raise APIError(400, f"lifetime {lifetime_raw} is longer than the most allowed, {hours} "
                            f"(CODER_MAX_TOKEN_LIFETIME / --max-token-lifetime)",
                       f"ask for {hours} or less")
    return lifetime


async def create_token(request: web.Request) -> web.Response:
    """A new token; the answer also carries the clients' set-up lines with it (shown once)."""
    settings = request.app[SETTINGS]
    async with audited(request, "create", "api_key") as change:
        user = await _target(request)
        change.additional_fields = {"user": user.username}
        body = await json_body(request)
        lifetime = _lifetime(body, settings.max_token_lifetime)
        try:
            key, token = await store.create_api_key(change.conn, user.id, lifetime,
                                                    string_field(body, "token_name"),
                                                    settings.max_tokens_per_user)
        except store.TooManyTokens as exc:
            raise APIError(409, f"cannot create a token for user {user.username!r}: {exc}",
                           exc.HINT.replace("{user}", user.username)) from None
        change.resource_id, change.resource_target = key.id, key.name
        change.diff = token_diff(key, token)
    return json_response({"key": token, "id": key.id, "token_name": key.name,
                          "expires_at": key.to_json()["expires_at"],
                          "setup": setup.setup_lines(settings, token)}, 201)


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


async def _other_user(request: web.Request, what: str = "suspend or delete yourself") -> User:
    """The user an owner acts on for off-boarding (never the owner itself: it would lock itself out)."""
    current = require(request, "owner")
    ref = request.match_info["user"]
    try:
        user = await store.get_user(request.app[ENGINE], str(current.id) if ref == "me" else ref)
    except store.NotFound as exc:
        raise APIError(404, str(exc)) from None
    if user.id == current.id:
        raise APIError(400, f"you cannot {what}", "ask another owner")
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


async def set_roles(request: web.Request) -> web.Response:
    """Coder's ``PUT /users/{user}/roles`` (``{"roles": [...]}``): here one role, none meaning member.
    Cached tokens carry the new role at once on every worker (the auth generation moves)."""
    async with audited(request, "write", "user", resource_target=request.match_info["user"]) as change:
        change.description = "change role"
        user = await _other_user(request, "change your own role")
        change.resource_id, change.resource_target = str(user.id), user.username
        roles = (await json_body(request)).get("roles")
        if not isinstance(roles, list) or len(roles) > 1 or any(r not in ROLES for r in roles):
            raise APIError(400, "roles must be a list of at most one role", f"use one of {', '.join(ROLES)}")
        role = roles[0] if roles else "member"
        await store.set_role(change.conn, user.id, role)
        change.diff = diff({"role": user.role}, {"role": role})
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
    app.router.add_put("/api/v2/users/{user}/roles", set_roles)
    setup.add_routes(app)
