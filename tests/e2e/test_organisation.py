"""An organisation's day, end to end through real parts: people sign in through a real OpenID
Provider, make their own tokens as the Tokens page does (the cookie session and its CSRF token),
use them from the OpenAI SDK through the bridge and revoke them (issue 21); groups are managed and
every change, group ones included, lands in the audit log with its actor and diff (issue 22).
A deleted user cannot sign in again through single sign-on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest

from tests.e2e.conftest import bridge_env
from tests.e2e.test_sso import USERS, Sso, browser, cookie, oidc_env, sign_in
from tests.fakes.oidc import OidcProvider, drive_sign_in
from tests.fakes.upstream import FakeUpstream
from tests.harness import Database, ServerProcess, free_port


@dataclass
class Org:
    server: ServerProcess
    provider: OidcProvider
    fake: FakeUpstream
    db: Database

    @property
    def url(self) -> str:
        return self.server.url

    def owner(self) -> dict[str, str]:
        return {"Coder-Session-Token": self.server.admin_token}

    async def sign_in(self, account: str) -> tuple[aiohttp.ClientSession, dict[str, Any]]:
        return await sign_in(Sso(self.server, self.provider, self.db), account)


@pytest.fixture(scope="module")
async def org(module_database: Database) -> AsyncIterator[Org]:
    fake = FakeUpstream()
    await fake.start()
    port = free_port()
    server = ServerProcess(module_database, {**bridge_env(fake), **oidc_env(f"http://127.0.0.1:{port}"),
                                             "CODER_AIBRIDGE_WORKERS": "2"})
    server.env["CODER_ACCESS_URL"] = server.url
    provider = await OidcProvider(server.url + "/api/v2/users/oidc/callback", USERS, port).start()
    try:
        await server.start()
        yield Org(server, provider, fake, module_database)
    finally:
        server.stop()
        provider.stop()
        await fake.stop()


def csrf(session: aiohttp.ClientSession) -> dict[str, str]:
    """What the UI sends with every write authenticated by its cookie."""
    return {"X-CSRF-Token": cookie(session, "csrf_token")}


async def chat(org: Org, token: str) -> str:
    client = openai.AsyncOpenAI(base_url=f"{org.url}/api/v2/aibridge/openai/v1", api_key=token,
                                max_retries=0, timeout=30)
    try:
        done = await client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
        return done.choices[0].message.content or ""
    finally:
        await client.close()


@pytest.mark.parametrize(("account", "username", "role", "groups"), [
    ("olivia", "olivia-owner", "owner", ["engineering", "staff"]),     # owner by the role claim
    ("adam", "adam", "auditor", ["staff"]),                             # auditor by the role mapping
    ("mia", "mia", "member", ["staff"]),                                # member by default
])
async def test_sign_in_make_a_token_use_it_and_revoke_it(org: Org, account: str, username: str, role: str,
                                                         groups: list[str]) -> None:
    session, me = await org.sign_in(account)
    async with session:
        assert (me["username"], me["role"], me["groups"], me["login_type"]) == (username, role, groups, "oidc")
        # The Tokens page: a token of one's own, with the set-up lines, through the cookie session.
        async with session.post(f"{org.url}/api/v2/users/me/keys/tokens", json={"token_name": "laptop"},
                                headers=csrf(session)) as made:
            assert made.status == 201, await made.text()
            created: dict[str, Any] = await made.json()
        assert any("OPENAI_BASE_URL" in line["text"] for line in created["setup"])
        assert await chat(org, created["key"])
        async with session.get(f"{org.url}/api/v2/users/me/keys/tokens") as listed:
            mine = {t["id"]: t for t in await listed.json()}
        assert mine[created["id"]]["token_name"] == "laptop"
        async with session.delete(f"{org.url}/api/v2/users/me/keys/{created['id']}", headers=csrf(session)) as gone:
            assert gone.status == 204
    # Refused at once, on whichever of the two workers answers.
    for _ in range(6):
        with pytest.raises(openai.PermissionDeniedError, match="revoked"):
            await chat(org, created["key"])


async def test_a_deleted_user_cannot_sign_in_again(org: Org) -> None:
    session, me = await org.sign_in("mia")
    await session.close()
    async with aiohttp.ClientSession(headers=org.owner()) as api, \
            api.delete(f"{org.url}/api/v2/users/{me['id']}") as resp:
        assert resp.status == 204
    async with browser() as refused:
        resp, body, _ = await drive_sign_in(refused, org.url, "mia")
        assert resp.status == 403 and "was deleted" in body
        assert not cookie(refused, "coder_session_token")


async def test_group_changes_are_in_the_audit_log(org: Org) -> None:
    session, adam = await org.sign_in("adam")      # an auditor: reads, never writes
    async with session, aiohttp.ClientSession(headers=org.owner()) as api:
        async with api.post(f"{org.url}/api/v2/groups", json={"name": "platform"}) as resp:
            assert resp.status == 201
        async with api.patch(f"{org.url}/api/v2/groups/platform",
                             json={"add_users": [adam["username"]], "display_name": "Platform"}) as resp:
            assert resp.status == 200
        async with api.put(f"{org.url}/api/v2/groups/platform/ai/budget",
                           json={"spend_limit_micros": 5_000_000}) as resp:
            assert resp.status == 200
        async with session.post(f"{org.url}/api/v2/groups", json={"name": "shadow"}, headers=csrf(session)) as resp:
            assert resp.status == 403
        async with api.delete(f"{org.url}/api/v2/groups/platform") as resp:
            assert resp.status == 204
        async with api.get(f"{org.url}/api/v2/audit", params={"q": "resource_type:group"}) as resp:
            groups = (await resp.json())["audit_logs"]
        async with api.get(f"{org.url}/api/v2/audit", params={"q": "resource_type:budget"}) as resp:
            budgets = (await resp.json())["audit_logs"]
    by_action = {(r["action"], r["status_code"]): r for r in groups}
    created = by_action[("create", 201)]
    assert created["resource_target"] == "platform" and created["user"]["username"] == "admin"
    written = by_action[("write", 200)]
    assert written["diff"]["members"] == {"old": [], "new": [adam["username"]], "secret": False}
    assert written["diff"]["display_name"]["new"] == "Platform"
    refused = by_action[("create", 403)]
    assert refused["user"]["username"] == adam["username"]
    assert by_action[("delete", 204)]["diff"]["name"] == {"old": "platform", "new": None, "secret": False}
    (budget,) = [r for r in budgets if r["resource_target"] == "group:platform"]
    assert budget["action"] == "write" and budget["diff"]["limit_usd"]["new"] == 5.0
