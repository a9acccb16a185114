"""Single sign-on routes: ``GET /api/v2/users/oidc/login``, ``GET /api/v2/users/oidc/callback``,
``POST /api/v2/users/logout``, and ``GET /api/v2/users/authmethods`` (what the sign-in page offers).

Every sign-in, refused sign-in and sign-out writes an audit row. A refused sign-in answers a short
HTML page saying why (the browser is on it), never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from typing import Any

from aiohttp import web

from aibridge.config.oidc import split_list
from aibridge.identity.oidc import Client, OidcError
from aibridge.identity.oidc_claims import profile
from aibridge.rest import session
from aibridge.rest.common import actor, json_response
from aibridge.server_keys import CHANGES, ENGINE, SETTINGS
from aibridge.store import audit
from aibridge.store import sso as sso_store
from aibridge.store import users as user_store

log = logging.getLogger("aibridge.oidc")
OIDC: web.AppKey[Client] = web.AppKey("oidc")
LOGIN, CALLBACK = "/api/v2/users/oidc/login", "/api/v2/users/oidc/callback"
LOGOUT, AUTH_METHODS = "/api/v2/users/logout", "/api/v2/users/authmethods"
PUBLIC_PATHS = frozenset({LOGIN, CALLBACK, AUTH_METHODS})
STATE_COOKIE = "oidc_state"
UI = "/aibridge/"
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'",
                "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


def _who(request: web.Request, user_id: Any = None, username: str = "") -> audit.Actor:
    return audit.Actor(user_id, username, request.remote or "", request.headers.get("User-Agent", ""))


async def _audit(request: web.Request, action: str, status: int, who: audit.Actor, description: str) -> None:
    entry = audit.Entry(action, "user", str(who.user_id or ""), who.username, status,
                        additional_fields={"login_type": "oidc"} if action == "login" else {},
                        description=description)
    try:
        async with request.app[ENGINE].begin() as conn:
            await audit.record(conn, who, entry)
    except Exception:         # the sign-in's answer does not wait on (or die with) its audit row
        log.exception("cannot write the audit row of a %s", action)


def _page(status: int, title: str, message: str) -> web.Response:
    body = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
            "<body style='font-family:sans-serif;max-width:40em;margin:4em auto'>"
            f"<h1>{html.escape(title)}</h1><p id=reason>{html.escape(message)}</p>"
            f"<p><a href='{UI}'>Back to AI Bridge</a></p></body></html>")
    return web.Response(status=status, text=body, content_type="text/html", headers=PAGE_HEADERS)


def _redirect_uri(request: web.Request) -> str:
    return request.app[SETTINGS].public_url + CALLBACK


def _found(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _return_to(raw: str) -> str:
    """Only a path on this server (an open redirect would hand the session to another site)."""
    # Browsers drop tabs and newlines from URLs ("/\t/evil" is "//evil"): only printable, no spaces.
    safe = raw.isprintable() and not any(c.isspace() or c == "\\" for c in raw)
    return raw if safe and raw.startswith("/") and not raw.startswith("//") else UI


async def login(request: web.Request) -> web.StreamResponse:
    client = request.app.get(OIDC)
    if client is None:
        return _page(404, "Single sign-on is not configured", "Sign in with an API token instead.")
    try:
        url, cookie = await client.begin(_redirect_uri(request), _return_to(request.query.get("redirect", UI)))
    except OidcError as exc:
        return _page(exc.status, "Single sign-on is unavailable", exc.message)
    response = _found(url)
    response.set_cookie(STATE_COOKIE, cookie, max_age=600, path="/api/v2/users/oidc/", httponly=True,
                        samesite="Lax", secure=session.secure(request))
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    client = request.app.get(OIDC)
    if client is None:
        return _page(404, "Single sign-on is not configured", "Sign in with an API token instead.")
    settings = request.app[SETTINGS]
    who = _who(request)
    try:
        claims, return_to = await client.finish(dict(request.query), request.cookies.get(STATE_COOKIE),
                                                _redirect_uri(request))
        found = profile(claims, settings)
        who = _who(request, None, found.username)
        user, _groups, created = await sso_store.sign_in(request.app[ENGINE], sso_store.SignIn(
            found.subject, found.email, found.email_verified, found.username, found.name, found.groups,
            found.role, settings.oidc_user_role_default, settings.oidc_allow_signups,
            settings.oidc_group_auto_create))
    except (OidcError, sso_store.Refused, sso_store.NoSignups) as exc:
        status, message = _refusal(exc)
        await _audit(request, "login", status, who, f"sign-in refused: {message}")
        page = _page(status, "Sign-in refused", message)
        page.del_cookie(STATE_COOKIE, path="/api/v2/users/oidc/")
        return page
    await request.app[CHANGES].publish()        # new groups or a new role apply on every worker at once
    token = await session.new_session(request, user.id)
    await _audit(request, "login", 200, _who(request, user.id, user.username),
                 f"signed in through the identity provider{' (user created)' if created else ''}")
    response = _found(return_to)
    session.set_session(request, response, token)
    response.del_cookie(STATE_COOKIE, path="/api/v2/users/oidc/")
    return response


def _refusal(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, OidcError):
        return exc.status, exc.message
    if isinstance(exc, sso_store.NoSignups):
        return 403, "you have no account here and sign-ups are closed: ask an owner to create one"
    return 403, str(exc)


async def logout(request: web.Request) -> web.Response:
    """Revokes the token that authenticated the request (the session's, for the UI) and clears the cookies."""
    current = actor(request)
    with contextlib.suppress(user_store.NotFound):
        await user_store.revoke_api_key(request.app[ENGINE], current.token_id)
    await request.app[CHANGES].publish()
    request["signed_out"] = True
    await _audit(request, "logout", 200, _who(request, current.id, current.username), "signed out")
    response = json_response({"message": "signed out"})
    session.clear_session(request, response)
    return response


async def auth_methods(request: web.Request) -> web.Response:
    """What the sign-in page offers; asking retries the identity provider's discovery when it was down."""
    settings = request.app[SETTINGS]
    client = request.app.get(OIDC)
    oidc: dict[str, Any] = {"enabled": client is not None}
    if client is not None:
        message = ""
        try:
            await client.metadata()
        except OidcError as exc:
            message = exc.message
        oidc.update(available=client.available, message=message, iconUrl=settings.oidc_icon_url,
                    signInText=settings.oidc_sign_in_text or "Sign in with SSO")
    return json_response({"password": {"enabled": not settings.disable_password_auth}, "oidc": oidc})


def add_routes(app: web.Application) -> None:
    settings = app[SETTINGS]
    if settings.oidc_enabled:
        client = Client(settings.oidc_issuer_url, settings.oidc_client_id, settings.oidc_client_secret,
                        split_list(settings.oidc_scopes))
        app[OIDC] = client
        app.on_startup.append(_discover_soon)
    app.router.add_get(LOGIN, login)
    app.router.add_get(CALLBACK, callback)
    app.router.add_post(LOGOUT, logout)
    app.router.add_get(AUTH_METHODS, auth_methods)


_TASKS: set[asyncio.Task[None]] = set()


async def _discover_soon(app: web.Application) -> None:
    """Reads the discovery document in the background: a provider that is down logs one line and
    the server starts anyway (sign-ins retry it)."""
    async def discover() -> None:
        with contextlib.suppress(OidcError):
            await app[OIDC].metadata()
    task = asyncio.get_running_loop().create_task(discover())
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
