"""Single sign-on through a real OpenID Provider (npm ``oidc-provider``), and the browser session.

The bridge runs as a real server; the provider's own login and consent forms are driven over HTTP
(``tests/fakes/oidc``). Three people sign in: an owner by role claim, an auditor by role mapping, a
member by default; refusals answer a page saying why; the session cookie carries a CSRF check and
ends at sign-out; forged ID tokens come from a tiny forger (a real provider never issues them).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.config import postgres_async_url
from aibridge.store.changes import AUTH, bump
from aibridge.store.db import create_engine
from aibridge.store.schema import api_keys, audit_logs
from tests.e2e.test_web import Page, devtools, page  # noqa: F401 (the browser fixtures)
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, ForgedIdp, OidcProvider, drive_sign_in, query_of
from tests.harness import Database, ServerProcess, free_port, run_cli, wait_for

STAFF = ["staff"]
USERS: dict[str, dict[str, Any]] = {
    "olivia": {"email": "olivia@example.com", "email_verified": True, "preferred_username": "Olivia.Owner",
               "name": "Olivia Owner", "groups": [*STAFF, "okta-eng"], "roles": ["owner"]},
    "adam": {"email": "adam@example.com", "email_verified": True, "preferred_username": "adam",
             "name": "Adam Auditor", "groups": [*STAFF, "ignored-lab"], "roles": ["sec-team"]},
    "mia": {"email": "mia@example.com", "email_verified": True, "preferred_username": "mia",
            "name": "Mia Member", "groups": STAFF, "roles": []},
    "outsider": {"email": "out@example.com", "email_verified": True, "preferred_username": "out",
                 "groups": ["contractors"]},
    "unverified": {"email": "unv@example.com", "email_verified": False, "preferred_username": "unv",
                   "groups": STAFF},
    "foreign": {"email": "someone@elsewhere.test", "email_verified": True, "preferred_username": "foreign",
                "groups": STAFF},
}


def oidc_env(issuer: str, **extra: str) -> dict[str, str]:
    return {"CODER_OIDC_ISSUER_URL": issuer, "CODER_OIDC_CLIENT_ID": CLIENT_ID,
            "CODER_OIDC_CLIENT_SECRET": CLIENT_SECRET, "CODER_OIDC_EMAIL_DOMAIN": "example.com",
            "CODER_OIDC_GROUP_FIELD": "groups", "CODER_OIDC_GROUP_AUTO_CREATE": "true",
            "CODER_OIDC_GROUP_MAPPING": json.dumps({"okta-eng": "engineering"}),
            "CODER_OIDC_GROUP_REGEX_FILTER": "^(?!ignored-)", "CODER_OIDC_ALLOWED_GROUPS": "staff",
            "CODER_OIDC_USER_ROLE_FIELD": "roles",
            "CODER_OIDC_USER_ROLE_MAPPING": json.dumps({"sec-team": ["auditor"]}),
            "CODER_OIDC_SIGN_IN_TEXT": "Sign in with Example SSO", **extra}


@dataclass
class Sso:
    server: ServerProcess
    provider: OidcProvider
    db: Database

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
async def sso(module_database: Database) -> AsyncIterator[Sso]:
    port = free_port()
    server = ServerProcess(module_database, oidc_env(f"http://127.0.0.1:{port}"))
    server.env["CODER_ACCESS_URL"] = server.url
    provider = await OidcProvider(server.url + "/api/v2/users/oidc/callback", USERS, port).start()
    try:
        await server.start()
        yield Sso(server, provider, module_database)
    finally:
        server.stop()
        provider.stop()


def browser() -> aiohttp.ClientSession:
    """A client with its own cookie jar (unsafe: the jar must keep cookies for 127.0.0.1)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 timeout=aiohttp.ClientTimeout(total=60))


def cookie(session: aiohttp.ClientSession, name: str) -> str:
    return next((c.value for c in session.cookie_jar if c.key == name), "")


async def sign_in(sso: Sso, account: str, url: str = "") -> tuple[aiohttp.ClientSession, dict[str, Any]]:
    """A browser session signed in as ``account`` (through the provider's forms) and its /users/me."""
    url = url or sso.url
    session = browser()
    try:
        resp, body, _ = await drive_sign_in(session, url, account)
        assert resp.status == 302, body
        assert resp.headers["Location"] == "/aibridge/"
        async with session.get(url + "/api/v2/users/me") as me:
            assert me.status == 200, await me.text()
            return session, await me.json()
    except BaseException:
        await session.close()
        raise


@contextlib.asynccontextmanager
async def database(db: Database) -> AsyncIterator[AsyncEngine]:
    """The server's own database, read (or altered) by the test directly."""
    url = postgres_async_url(db.postgres.url) if db.postgres else f"sqlite+aiosqlite:///{db.data_dir / 'aibridge.db'}"
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def audit_rows(db: Database, action: str) -> list[Any]:
    async with database(db) as engine, engine.connect() as conn:
        return list((await conn.execute(sa.select(audit_logs).where(audit_logs.c.action == action)
                                        .order_by(audit_logs.c.time))).all())


# ---------------------------------------------------------------- sign-in

async def test_three_people_get_their_role_and_groups(sso: Sso) -> None:
    expected = {"olivia": ("olivia-owner", "owner", ["engineering", "staff"]),
                "adam": ("adam", "auditor", ["staff"]),
                "mia": ("mia", "member", ["staff"])}
    for account, (username, role, groups) in expected.items():
        session, me = await sign_in(sso, account)
        await session.close()
        assert (me["username"], me["role"], me["groups"], me["login_type"]) == (username, role, groups, "oidc"), me
        assert me["email"] == USERS[account]["email"]
    rows = await audit_rows(sso.db, "login")
    assert {r.username for r in rows if r.status_code == 200} >= {"olivia-owner", "adam", "mia"}
    assert all(r.resource_type == "user" and r.ip == "127.0.0.1" for r in rows)


async def test_a_group_change_at_the_provider_moves_the_user(sso: Sso) -> None:
    moved = {**USERS, "mia": {**USERS["mia"], "groups": [*STAFF, "okta-eng"]}}
    sso.provider.set_users(moved)
    try:
        session, me = await sign_in(sso, "mia")
        await session.close()
        assert me["groups"] == ["engineering", "staff"]
    finally:
        sso.provider.set_users(USERS)
    session, me = await sign_in(sso, "mia")
    await session.close()
    assert me["groups"] == ["staff"]
    assert me["role"] == "member"


@pytest.mark.parametrize(("account", "reason"), [
    ("outsider", "not in a group allowed to sign in"),
    ("unverified", "email address is not verified"),
    ("foreign", "not in an allowed domain"),
])
async def test_refused_people_see_why(sso: Sso, account: str, reason: str) -> None:
    async with browser() as session:
        resp, body, _ = await drive_sign_in(session, sso.url, account)
        assert resp.status == 403
        assert resp.content_type == "text/html"
        assert "Sign-in refused" in body and reason in body
        assert not cookie(session, "coder_session_token")
    owner = {"Coder-Session-Token": sso.server.admin_token}
    async with aiohttp.ClientSession() as plain, plain.get(sso.url + "/api/v2/users", headers=owner) as users:
        names = {u["email"] for u in (await users.json())["users"]}
    assert USERS[account]["email"] not in names
    refused = [r for r in await audit_rows(sso.db, "login") if r.status_code == 403]
    assert any(reason in r.description for r in refused)


async def test_a_suspended_user_is_refused(sso: Sso) -> None:
    session, me = await sign_in(sso, "mia")
    await session.close()
    owner = {"Coder-Session-Token": sso.server.admin_token}
    async with aiohttp.ClientSession(headers=owner) as api:
        async with api.post(f"{sso.url}/api/v2/users/{me['id']}/status/suspend") as resp:
            assert resp.status == 200
        try:
            async with browser() as refused:
                resp, body, _ = await drive_sign_in(refused, sso.url, "mia")
                assert resp.status == 403 and "is suspended" in body
                assert not cookie(refused, "coder_session_token")
        finally:
            async with api.post(f"{sso.url}/api/v2/users/{me['id']}/status/activate") as resp:
                assert resp.status == 200


async def test_sign_in_returns_only_to_this_server(sso: Sso) -> None:
    for target, expected in (("/aibridge/#sessions", "/aibridge/#sessions"), ("//evil.test/", "/aibridge/"),
                             ("/\t/evil.test", "/aibridge/"), ("https://evil.test/", "/aibridge/")):
        async with browser() as session:
            start = sso.url + "/api/v2/users/oidc/login?" + urlencode({"redirect": target})
            resp, body, _ = await drive_sign_in(session, sso.url, "mia", start=start)
            assert resp.status == 302 and resp.headers["Location"] == expected, (target, body)


async def test_a_wrong_state_is_refused(sso: Sso) -> None:
    async with browser() as session:
        async with session.get(sso.url + "/api/v2/users/oidc/login", allow_redirects=False) as resp:
            authorize = resp.headers["Location"]
        tampered = authorize.replace(query_of(authorize)["state"], "forged-state")
        resp, body, _ = await drive_sign_in(session, sso.url, "mia", start=tampered)
        assert resp.status == 400 and "state does not match" in body
        assert not cookie(session, "coder_session_token")


async def test_a_replayed_code_is_refused(sso: Sso) -> None:
    async with browser() as session:
        async with session.get(sso.url + "/api/v2/users/oidc/login", allow_redirects=False) as resp:
            state_cookie = resp.cookies["oidc_state"].value
            authorize = resp.headers["Location"]
        resp, _, callback = await drive_sign_in(session, sso.url, "mia", start=authorize)
        assert resp.status == 302
    async with aiohttp.ClientSession() as attacker, attacker.get(
            callback, headers={"Cookie": f"oidc_state={state_cookie}"}, allow_redirects=False) as replay:
        body = await replay.text()
    assert replay.status == 403 and "refused the authorization code" in body
    assert "coder_session_token" not in replay.cookies


# ---------------------------------------------------------------- the session

async def test_cookie_writes_need_the_csrf_token(sso: Sso) -> None:
    session, me = await sign_in(sso, "mia")
    async with session:
        tokens = sso.url + "/api/v2/users/me/keys/tokens"
        async with session.post(tokens, json={"token_name": "no-csrf"}) as resp:
            assert resp.status == 403
            assert "CSRF" in (await resp.json())["message"]
        async with session.post(tokens, json={"token_name": "wrong"}, headers={"X-CSRF-Token": "nope"}) as resp:
            assert resp.status == 403
        csrf = cookie(session, "csrf_token")
        async with session.post(tokens, json={"token_name": "with-csrf"}, headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 201, await resp.text()
            made = (await resp.json())["key"]
    # A bearer-token client needs no CSRF token (and sends no cookie).
    async with aiohttp.ClientSession() as api, api.post(
            tokens, json={"token_name": "bearer"}, headers={"Authorization": f"Bearer {made}"}) as resp:
        assert resp.status == 201
    assert me["username"] == "mia"


async def test_the_cookie_does_not_open_the_bridge_routes(sso: Sso) -> None:
    session, _ = await sign_in(sso, "mia")
    async with session, session.post(sso.url + "/api/v2/aibridge/openai/v1/chat/completions",
                                     json={"model": "gpt-4.1", "messages": []}) as resp:
        assert resp.status in (401, 404)       # never authenticated by the cookie
        assert resp.status != 200


async def test_sign_out_ends_the_session(sso: Sso) -> None:
    session, _ = await sign_in(sso, "adam")
    async with session:
        session_token = cookie(session, "coder_session_token")
        async with session.post(sso.url + "/api/v2/users/logout",
                                headers={"X-CSRF-Token": cookie(session, "csrf_token")}) as resp:
            assert resp.status == 200
        assert not cookie(session, "coder_session_token")
    async with aiohttp.ClientSession() as again, again.get(
            sso.url + "/api/v2/users/me", headers={"Cookie": f"coder_session_token={session_token}"}) as resp:
        assert resp.status == 403
        assert "revoked" in (await resp.json())["message"]
        assert resp.cookies["coder_session_token"].value == ""        # the stale cookie is cleared
    assert any(r.username == "adam" for r in await audit_rows(sso.db, "logout"))


async def test_the_session_renews_itself_while_in_use(sso: Sso) -> None:
    session, _ = await sign_in(sso, "mia")
    async with session:
        first = cookie(session, "coder_session_token")
        async with database(sso.db) as engine, engine.begin() as conn:     # past half of its 24 h
            await conn.execute(api_keys.update().where(api_keys.c.id == first.split("-")[0])
                               .values(expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=11)))
            await bump(conn, AUTH)          # as any token change does: the server drops its cached copy

        async def renewed() -> bool:
            async with session.get(sso.url + "/api/v2/users/me") as resp:
                assert resp.status == 200
                return "coder_session_token" in resp.cookies
        assert await wait_for(renewed, timeout=5, interval=0.2)
        second = cookie(session, "coder_session_token")
        assert second and second != first
        async with session.get(sso.url + "/api/v2/users/me") as resp:
            assert resp.status == 200 and "coder_session_token" not in resp.cookies
    async with database(sso.db) as engine, engine.connect() as conn:
        old_expiry = (await conn.execute(sa.select(api_keys.c.expires_at)
                                         .where(api_keys.c.id == first.split("-")[0]))).scalar_one()
    assert old_expiry <= dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1, seconds=5)   # retired soon


async def test_sign_in_works_across_workers(database: Database) -> None:
    """The sign-in's two legs land on whichever worker the kernel picks: nothing is kept in one
    process (state, nonce and PKCE verifier travel in the signed cookie)."""
    port = free_port()
    server = ServerProcess(database, {**oidc_env(f"http://127.0.0.1:{port}"), "CODER_AIBRIDGE_WORKERS": "2"})
    server.env["CODER_ACCESS_URL"] = server.url
    provider = await OidcProvider(server.url + "/api/v2/users/oidc/callback", USERS, port).start()
    try:
        await server.start()
        for _ in range(4):
            session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                            connector=aiohttp.TCPConnector(force_close=True))
            async with session:
                resp, body, _ = await drive_sign_in(session, server.url, "mia")
                assert resp.status == 302, body
                async with session.get(server.url + "/api/v2/users/me") as me:
                    assert (await me.json())["username"] == "mia"
    finally:
        server.stop()
        provider.stop()


async def test_auth_methods_tell_the_sign_in_page(sso: Sso) -> None:
    async with aiohttp.ClientSession() as plain, plain.get(sso.url + "/api/v2/users/authmethods") as resp:
        body = await resp.json()
    assert body == {"password": {"enabled": True},
                    "oidc": {"enabled": True, "available": True, "message": "", "iconUrl": "",
                             "signInText": "Sign in with Example SSO"}}


# ---------------------------------------------------------------- in the browser

async def test_the_whole_flow_in_chromium(sso: Sso, page: Page) -> None:  # noqa: F811
    """The UI offers SSO, the provider's own forms sign Olivia in, the page runs on the cookie (which
    JavaScript cannot read), writes carry the CSRF header, and sign-out revokes the session."""
    await page.goto(sso.url + "/aibridge/")
    await page.wait("!!document.querySelector('#sso-sign-in')", "the SSO button")
    assert await page.text("#sso-sign-in") == "Sign in with Example SSO"
    assert await page.js("!document.querySelector('#signin-form').hidden")     # token paste stays
    await page.click("#sso-sign-in")
    await page.wait("location.href.includes('/interaction/') && !!document.querySelector('input[name=login]')",
                    "the provider's login form")
    await page.type("input[name=login]", "olivia")
    await page.type("input[name=password]", "any")
    await page.click("button[type=submit]")
    await page.wait("!!document.querySelector('input[name=prompt][value=consent]')",
                    "the provider's consent form")
    await page.click("button[type=submit]")
    await page.wait("location.pathname === '/aibridge/' && "
                    "(document.querySelector('#who-name')?.textContent || '').includes('olivia-owner')",
                    "Olivia signed in")
    assert await page.text("#who-role") == "owner"
    assert "coder_session_token" not in await page.js("document.cookie")        # HttpOnly
    assert await page.js("sessionStorage.getItem('aibridge.token')") is None
    made = await page.js("""fetch('/api/v2/users/me/keys/tokens', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({token_name: 'from-ui'})})
        .then(r => r.status)""")
    assert made == 201                                   # session.js added the CSRF header
    await page.click("#sign-out")
    await page.wait("!document.querySelector('#signin-view').hidden", "the sign-in box again")
    await page.wait("!document.cookie.includes('csrf_token=')", "the session cookies to be cleared")
    assert await page.js("fetch('/api/v2/users/me').then(r => r.status)") == 401
    rows = [r for r in await audit_rows(sso.db, "logout") if r.username == "olivia-owner"]
    assert rows


# ---------------------------------------------------------------- forged tokens

@pytest.fixture(scope="module")
async def forged(module_database: Database) -> AsyncIterator[tuple[ServerProcess, ForgedIdp]]:
    idp = await ForgedIdp().start()
    env = {**oidc_env(idp.issuer), "CODER_OIDC_CLIENT_ID": "forged-client", "CODER_OIDC_ALLOWED_GROUPS": "",
           "CODER_OIDC_USER_ROLE_FIELD": "", "CODER_OIDC_GROUP_FIELD": ""}
    server = ServerProcess(module_database, env)
    server.env["CODER_ACCESS_URL"] = server.url
    try:
        await server.start()
        yield server, idp
    finally:
        server.stop()
        await idp.stop()


@pytest.mark.parametrize(("mode", "reason"), [
    ("foreign-key", "signature does not verify"),
    ("expired", "ID token is not valid"),
    ("audience", "ID token is not valid"),
    ("nonce", "ID token is not valid"),
    ("good", ""),
])
async def test_forged_id_tokens_are_refused(forged: tuple[ServerProcess, ForgedIdp], mode: str, reason: str) -> None:
    server, idp = forged
    idp.mode = mode
    async with browser() as session, session.get(server.url + "/api/v2/users/oidc/login") as resp:
        body = await resp.text()
    if mode == "good":
        assert resp.status == 200 and str(resp.url).endswith("/aibridge/"), body[:500]
    else:
        assert resp.status == 403 and reason in body, body[:500]


# ---------------------------------------------------------------- configuration and outages

@pytest.mark.parametrize(("env", "option"), [
    ({"CODER_OIDC_GROUP_MAPPING": "{not json"}, "--oidc-group-mapping"),
    ({"CODER_OIDC_USER_ROLE_MAPPING": '{"x": ["superuser"]}'}, "--oidc-user-role-mapping"),
    ({"CODER_OIDC_ISSUER_URL": "http://idp.example.com"}, "--oidc-issuer-url"),
    ({"CODER_OIDC_CLIENT_SECRET": ""}, "--oidc-client-secret"),
])
async def test_bad_configuration_is_one_line(database: Database, env: dict[str, str], option: str) -> None:
    result = run_cli(["server"], {**database.env(), **oidc_env("https://idp.example.com"), **env}, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], result.stderr


async def test_an_unreachable_provider_does_not_stop_the_server(database: Database, page: Page) -> None:  # noqa: F811
    """Bearer tokens keep working, one log line, the sign-in page says SSO is unavailable (and, with
    CODER_DISABLE_PASSWORD_AUTH, offers no token box), and SSO comes back once the provider answers."""
    port = free_port()
    server = ServerProcess(database, {**oidc_env(f"http://127.0.0.1:{port}"), "CODER_DISABLE_PASSWORD_AUTH": "true"})
    server.env["CODER_ACCESS_URL"] = server.url
    provider = OidcProvider(server.url + "/api/v2/users/oidc/callback", USERS, port)
    await server.start()
    try:
        async with aiohttp.ClientSession() as plain:
            headers = {"Authorization": f"Bearer {server.admin_token}"}
            async with plain.get(server.url + "/api/v2/users/me", headers=headers) as resp:
                assert resp.status == 200
            async with plain.get(server.url + "/api/v2/users/authmethods") as resp:
                oidc = (await resp.json())["oidc"]
            assert oidc["available"] is False and "does not answer" in oidc["message"]
            await page.goto(server.url + "/aibridge/")
            await page.wait("!!document.querySelector('#sso-unavailable')", "the SSO-unavailable notice")
            assert "SSO is unavailable" in await page.text("#sso-unavailable")
            assert await page.js("document.querySelector('#signin-form').hidden")
            async with plain.get(server.url + "/api/v2/users/oidc/login") as resp:
                assert resp.status == 503 and "unavailable" in await resp.text()
            assert server.output().count("single sign-on unavailable") == 1
            await provider.start()

            async def available() -> bool:
                async with plain.get(server.url + "/api/v2/users/authmethods") as resp:
                    return bool((await resp.json())["oidc"]["available"])
            assert await wait_for(available, timeout=15, interval=0.5)
    finally:
        server.stop()
        provider.stop()
