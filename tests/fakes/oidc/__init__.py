"""Identity providers for the SSO tests.

``OidcProvider`` runs the npm package ``oidc-provider`` (v9, the certified Node implementation) from
``provider.mjs`` on a loopback port; it is installed once into ``<repo>/.cache/oidc-provider`` (or
``$AIBRIDGE_OIDC_PROVIDER_DIR``) like the client CLIs, and a missing node or npm FAILS the tests.
``ForgedIdp`` is a tiny in-process provider whose token endpoint answers ID tokens that must be
refused (signed by a key the JWKS does not hold, expired, for another audience or nonce): a real
provider never issues those, so only a forger can show that the bridge refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey
from yarl import URL

from tests.e2e.clients import REPO, _locked, _run, _tool
from tests.harness import free_port

PINNED = "9.13.3"        # npm view oidc-provider version, 2026-12-07
CACHE = REPO / ".cache" / "oidc-provider"
SCRIPT = Path(__file__).with_name("provider.mjs")
CLIENT_ID, CLIENT_SECRET = "aibridge", "aibridge-test-client-secret"


def install() -> Path:
    """The folder holding node_modules/oidc-provider at the pinned version (installed once)."""
    npm = _tool("npm")
    with _locked(CACHE):
        stamp = CACHE / "installed.json"
        with contextlib.suppress(OSError, ValueError):
            if json.loads(stamp.read_text()) == {"oidc-provider": PINNED}:
                return CACHE
        result = _run([npm, "install", "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=warn",
                       "--prefix", str(CACHE), f"oidc-provider@{PINNED}"], 300, cwd=CACHE)
        if result.returncode != 0:
            pytest.fail(f"npm install oidc-provider@{PINNED} failed:\n{result.stdout[-3000:]}", pytrace=False)
        stamp.write_text(json.dumps({"oidc-provider": PINNED}))
    return CACHE


class OidcProvider:
    """oidc-provider on ``port`` with one client whose redirect URI is the bridge's callback."""

    def __init__(self, redirect_uri: str, users: dict[str, dict[str, Any]], port: int | None = None) -> None:
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.redirect_uri = redirect_uri
        self.folder = install()
        self.users_file = self.folder / f"users-{self.port}.json"
        self.set_users(users)
        self.proc: subprocess.Popen[str] | None = None

    def set_users(self, users: dict[str, dict[str, Any]]) -> None:
        self.users_file.write_text(json.dumps(users))

    async def start(self) -> OidcProvider:
        node = _tool("node")
        script = self.folder / SCRIPT.name       # beside node_modules: ES modules resolve from their folder
        script.write_text(SCRIPT.read_text())
        self.proc = subprocess.Popen(
            [node, str(script), str(self.port), str(self.users_file), self.redirect_uri, CLIENT_ID, CLIENT_SECRET],
            cwd=self.folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={"PATH": str(Path(node).parent)})
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"oidc-provider exited:\n{self.proc.stdout.read() if self.proc.stdout else ''}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.issuer + "/.well-known/openid-configuration") as resp:
                        if resp.status == 200:
                            return self
                await asyncio.sleep(0.1)
        self.stop()
        raise RuntimeError("oidc-provider did not start within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_HIDDEN = re.compile(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', re.S)


async def drive_sign_in(session: aiohttp.ClientSession, bridge_url: str, account: str,
                        start: str | None = None) -> tuple[aiohttp.ClientResponse, str, str]:
    """Follows a sign-in from the bridge's login route through the provider's login and consent
    forms to the bridge's callback. Returns the callback's response, its body and its URL."""
    url = start or bridge_url + "/api/v2/users/oidc/login"
    method, data = "GET", None
    for _ in range(30):
        async with session.request(method, url, data=data, allow_redirects=False) as resp:
            body = await resp.text()
            if url.startswith(bridge_url + "/api/v2/users/oidc/callback"):
                return resp, body, url
            if resp.status in (301, 302, 303, 307):
                url = str(resp.url.join(URL(resp.headers["Location"])))
                method, data = "GET", None
                continue
            form = _FORM.search(body)
            if resp.status != 200 or form is None:
                raise AssertionError(f"unexpected answer {resp.status} from {url}:\n{body[:2000]}")
            fields = dict(_HIDDEN.findall(form.group(2)))
            if 'name="login"' in form.group(2):
                fields.update(login=account, password="any")
            url, method, data = str(resp.url.join(URL(form.group(1)))), "POST", fields
    raise AssertionError("the sign-in did not reach the bridge's callback in 30 steps")


class ForgedIdp:
    """An issuer whose ID tokens are bad in the way ``mode`` says: 'foreign-key', 'expired',
    'audience', 'nonce' (or 'good', to show the set-up itself works)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "published"})
        self.other = RSAKey.generate_key(2048, parameters={"kid": "published"})
        self.mode = "good"
        self.nonces: dict[str, str] = {}
        self.runner: web.AppRunner | None = None

    async def start(self) -> ForgedIdp:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/auth", self.auth)
        app.router.add_post("/token", self.token)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def discovery(self, _request: web.Request) -> web.Response:
        return web.json_response({"issuer": self.issuer, "authorization_endpoint": self.issuer + "/auth",
                                  "token_endpoint": self.issuer + "/token", "jwks_uri": self.issuer + "/jwks"})

    async def jwks(self, _request: web.Request) -> web.Response:
        return web.json_response({"keys": [self.key.as_dict(private=False)]})

    async def auth(self, request: web.Request) -> web.Response:
        code = f"code-{len(self.nonces)}"
        self.nonces[code] = request.query["nonce"]
        target = request.query["redirect_uri"] + "?" + urlencode({"code": code, "state": request.query["state"]})
        raise web.HTTPFound(target)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        nonce = self.nonces.pop(str(form["code"]), "")
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": "forged-1", "aud": "forged-client", "iat": now, "exp": now + 300,
                  "nonce": nonce, "email": "forged@example.com", "email_verified": True,
                  "preferred_username": "forged"}
        if self.mode == "expired":
            claims.update(iat=now - 7200, exp=now - 3600)
        elif self.mode == "audience":
            claims["aud"] = "someone-else"
        elif self.mode == "nonce":
            claims["nonce"] = "not-the-one-sent"
        key = self.other if self.mode == "foreign-key" else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "published"}, claims, key)
        return web.json_response({"access_token": "at", "token_type": "Bearer", "id_token": id_token})


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
