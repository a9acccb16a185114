"""The browser session: an HttpOnly, SameSite=Lax cookie holding a short-lived API token, and the
double-submit CSRF check for the requests it authenticates (DESIGN §2.6).

A request with a token header (``Coder-Session-Token``, ``Authorization: Bearer``, ``X-Api-Key``)
is authenticated by it alone and needs no CSRF token: a browser never adds those headers on its
own. A request authenticated by the cookie must echo the ``csrf_token`` cookie in
``X-CSRF-Token`` when it changes state. The session's token is a normal token row (named
``session``); past half its life a request re-issues it, and the old one stops a minute later.
The bridge routes never read the cookie (server.py sends them no cookie-authenticated actor).
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets

from aiohttp import web

from aibridge.identity.auth import AuthError, token_from_headers
from aibridge.identity.roles import Actor
from aibridge.rest.common import APIError
from aibridge.server_keys import AUTHENTICATOR, ENGINE, SETTINGS
from aibridge.store import sso as sso_store
from aibridge.store import users as user_store

SESSION_COOKIE = "coder_session_token"
CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_NAME = "session"
SESSION_LIFETIME = dt.timedelta(hours=24)
RENEWAL_GRACE = dt.timedelta(minutes=1)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RENEW = "session_renew"


def secure(request: web.Request) -> bool:
    """Secure cookies when the server is reached over https (its access URL says so)."""
    return request.app[SETTINGS].public_url.startswith("https://")


def set_session(request: web.Request, response: web.StreamResponse, token: str) -> None:
    """The session cookie and a fresh CSRF cookie (readable by the page, which echoes it)."""
    age = int(SESSION_LIFETIME.total_seconds())
    response.set_cookie(SESSION_COOKIE, token, max_age=age, path="/", httponly=True, samesite="Lax",
                        secure=secure(request))
    response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(32), max_age=age, path="/", httponly=False,
                        samesite="Lax", secure=secure(request))


def clear_session(request: web.Request, response: web.StreamResponse) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.del_cookie(name, path="/", secure=secure(request), samesite="Lax")


async def new_session(request: web.Request, user_id: object) -> str:
    """A session token for the user (a normal token row, revoked at sign-out)."""
    _, token = await user_store.create_api_key(request.app[ENGINE], user_id, SESSION_LIFETIME,  # type: ignore[arg-type]
                                               SESSION_NAME)
    return token


async def authenticate(request: web.Request) -> Actor:
    """The request's actor from its token header, else from the session cookie (with the CSRF check)."""
    authenticator = request.app[AUTHENTICATOR]
    cookie = request.cookies.get(SESSION_COOKIE)
    if token_from_headers(request.headers) or not cookie:
        return await authenticator.authenticate(request.headers)
    try:
        actor, expires_at = await authenticator.verify(cookie)
    except AuthError as exc:
        if exc.status == 503:
            raise
        refused = APIError(exc.status, exc.message, "the browser session has ended: sign in again")
        clear_session(request, refused)      # a stale cookie must not keep the page thinking it is signed in
        raise refused from None
    if request.method not in SAFE_METHODS:
        sent, expected = request.headers.get(CSRF_HEADER, ""), request.cookies.get(CSRF_COOKIE, "")
        if not sent or not expected or not hmac.compare_digest(sent, expected):
            raise APIError(403, "missing or wrong CSRF token",
                           f"a request authenticated by the session cookie must echo the {CSRF_COOKIE} cookie "
                           f"in the {CSRF_HEADER} header (API clients: send a token header instead)")
    if expires_at - dt.datetime.now(dt.UTC) < SESSION_LIFETIME / 2:
        request[_RENEW] = actor
    return actor


async def renew(request: web.Request, response: web.StreamResponse) -> None:
    """Past half its life, the session's token is re-issued (the old one stops a minute later)."""
    actor: Actor | None = request.get(_RENEW)
    if actor is None or response.prepared or request.get("signed_out"):
        return
    token = await new_session(request, actor.id)
    set_session(request, response, token)
    await sso_store.retire_key(request.app[ENGINE], actor.token_id, RENEWAL_GRACE)
