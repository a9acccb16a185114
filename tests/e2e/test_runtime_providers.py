"""Providers managed at runtime (issue 23 §3, DESIGN §2.6): ``/api/v2/ai/providers``.

The configured providers are listed read-only (``source: config``); a provider created through the
API serves traffic at once, with its own keys (encrypted at rest, shown masked), stops when
disabled (a non-retryable 403 in the provider's shape), changes keys without a restart, and is
gone when deleted; every change is audited without its secrets. On PostgreSQL: a provider created
on one replica serves on both workers of another, and a replica without the same secrets key shows
it with status ``error`` (API and ``provider_info``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import sqlalchemy as sa

from aibridge.store.db import create_engine
from tests.e2e.conftest import bridge_env
from tests.e2e.test_proxy import Proxied, proxy_env, run_sdk, wait_listening
from tests.e2e.test_replicas import start_replicas
from tests.fakes.upstream import FakeUpstream
from tests.harness import POSTGRES_URL, Client, Database, ServerProcess, free_port, run_cli, wait_for
from tests.unit.test_retention import database_url

PROVIDERS = "/api/v2/ai/providers"
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="replicas share one PostgreSQL: "
                                                             "set AIBRIDGE_TEST_POSTGRES_URL")
TEAM_KEY, SECOND_KEY = "sk-team-0123456789abcdefWXYZ", "sk-team-second-0123456789abcd"
SECRETS_KEY = base64.b64encode(os.urandom(32)).decode()


@dataclass
class Env:
    server: ServerProcess
    central: FakeUpstream         # the configured providers' upstream
    team: FakeUpstream            # the upstream of the providers made through the API (its own key)
    owner: Client
    member_token: str

    async def chat(self, provider: str, token: str | None = None) -> tuple[int, Any]:
        return await chat(self.server, provider, token or self.member_token)


async def chat(server: ServerProcess, provider: str, token: str) -> tuple[int, Any]:
    """One chat completion through ``/api/v2/aibridge/<provider>`` as the holder of ``token``."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.post(
            f"{server.url}/api/v2/aibridge/{provider}/v1/chat/completions",
            json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, orjson.loads(await resp.read())


@pytest.fixture(scope="module")
async def env(module_database: Database) -> AsyncIterator[Env]:
    async with FakeUpstream() as central, FakeUpstream(openai_key=TEAM_KEY) as team:
        server = await ServerProcess(module_database, env=bridge_env(central)).start()
        try:
            yield Env(server, central, team, Client(server.url, server.admin_token), server.create_user("pmember"))
        finally:
            server.stop()


def _team(env: Env, name: str = "team-openai", **extra: Any) -> dict[str, Any]:
    return {"type": "openai", "name": name, "display_name": "Team OpenAI", "base_url": f"{env.team.url}/v1/",
            "api_keys": [TEAM_KEY], **extra}


async def test_configured_providers_are_listed_read_only(env: Env) -> None:
    status, body = await env.owner.get(PROVIDERS)
    assert status == 200, body
    by_name = {p["name"]: p for p in body["providers"]}
    openai_ = by_name["openai"]
    assert openai_["source"] == "config" and openai_["status"] == "enabled" and openai_["type"] == "openai"
    assert [k["masked"] for k in openai_["api_keys"]] == ["sk-…tral"]
    assert "sk-openai-central" not in orjson.dumps(body).decode()
    assert (await env.owner.get(f"{PROVIDERS}/{openai_['id']}"))[1]["name"] == "openai"       # by id too
    for method, payload in (("PATCH", {"enabled": False}), ("DELETE", None)):
        status, body = await env.owner.request(method, f"{PROVIDERS}/openai", payload)
        assert status == 409 and "read-only" in body["message"], body
    assert (await env.owner.get(f"{PROVIDERS}/nosuch"))[0] == 404


async def test_roles(env: Env) -> None:
    auditor = Client(env.server.url, env.server.create_user("pauditor", "auditor"))
    member = Client(env.server.url, env.member_token)
    assert (await auditor.get(PROVIDERS))[0] == 200
    assert (await auditor.get(f"{PROVIDERS}/openai"))[0] == 200
    assert (await auditor.post(PROVIDERS, _team(env, "by-auditor")))[0] == 403
    assert (await member.get(PROVIDERS))[0] == 403
    assert (await member.post(PROVIDERS, _team(env, "by-member")))[0] == 403
    assert (await Client(env.server.url, "").get(PROVIDERS))[0] == 401


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"name": "Bad_Name"}, 400, "invalid provider name"),
    ({"name": "openai"}, 409, "configured"),
    ({"type": "nosuch"}, 400, "type: must be one of"),
    ({"api_keys": []}, 400, "api_keys"),
    ({"api_keys": [""]}, 400, "non-empty"),
    ({"settings": {"region": "x"}}, 400, "settings.region: not a setting"),
    ({"base_url": "ftp://x"}, 400, "base_url"),
    ({"base_url": "https://user:pw@example.com/v1/"}, 400, "credentials"),
    ({"enabled": "yes"}, 400, "enabled"),
])
async def test_create_refuses_what_cannot_work(env: Env, body: dict[str, Any], status: int, fragment: str) -> None:
    got, answer = await env.owner.post(PROVIDERS, {**_team(env, "refused"), **body})
    assert got == status and fragment in answer["message"], answer


async def test_created_provider_serves_stops_when_disabled_and_changes_keys(env: Env) -> None:
    status, made = await env.owner.post(PROVIDERS, _team(env))
    assert status == 201, made
    assert made["source"] == "api" and made["status"] == "enabled" and made["enabled"] is True
    assert [k["masked"] for k in made["api_keys"]] == ["sk-…WXYZ"] and TEAM_KEY not in orjson.dumps(made).decode()
    assert (await env.owner.post(PROVIDERS, _team(env)))[0] == 409

    # It serves at once, with its own key (the team upstream accepts only that one), recorded under its name.
    client = openai.AsyncOpenAI(base_url=f"{env.server.url}/api/v2/aibridge/team-openai/v1",
                                api_key=env.member_token, max_retries=0)
    answer = await client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    assert env.team.requests[-1].headers["Authorization"] == f"Bearer {TEAM_KEY}"

    async def recorded() -> bool:
        _, body = await env.owner.get("/api/v2/aibridge/interceptions?q=provider:openai&limit=5")
        return any(r["provider_name"] == "team-openai" for r in body["results"])
    assert await wait_for(recorded)

    # Disabled: a 403 in OpenAI's shape, which the SDK does not retry; nothing reaches the upstream.
    before = len(env.team.requests)
    status, body = await env.owner.request("PATCH", f"{PROVIDERS}/team-openai", {"enabled": False})
    assert status == 200 and body["status"] == "disabled", body
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    assert "disabled" in str(refused.value.body) and len(env.team.requests) == before
    assert (await env.owner.request("PATCH", f"{PROVIDERS}/team-openai", {"enabled": True}))[1]["status"] == "enabled"
    assert (await env.chat("team-openai"))[0] == 200

    # Keys: keep none, add another → the upstream now sees the new key (it refuses the old one: 401 relayed).
    env.team.openai_key = SECOND_KEY
    status, body = await env.owner.request("PATCH", f"{PROVIDERS}/team-openai", {"api_keys": [{"api_key": SECOND_KEY}]})
    assert status == 200 and [k["masked"] for k in body["api_keys"]] == ["sk-…abcd"], body
    assert (await env.chat("team-openai"))[0] == 200
    assert env.team.requests[-1].headers["Authorization"] == f"Bearer {SECOND_KEY}"
    kept = body["api_keys"][0]["id"]
    status, body = await env.owner.request("PATCH", f"{PROVIDERS}/team-openai",
                                           {"api_keys": [{"id": kept}, {"api_key": TEAM_KEY}]})
    assert status == 200 and body["api_keys"][0]["id"] == kept and len(body["api_keys"]) == 2
    assert (await env.owner.request("PATCH", f"{PROVIDERS}/team-openai", {"api_keys": []}))[0] == 400   # needs one
    assert (await env.owner.request("PATCH", f"{PROVIDERS}/team-openai", {"api_keys": [{"id": "x"}]}))[0] == 400
    assert (await env.owner.request("PATCH", f"{PROVIDERS}/team-openai", {"name": "renamed"}))[0] == 400

    # The keys are stored encrypted: neither appears in the database.
    engine = create_engine(database_url(env.server.db))
    try:
        async with engine.connect() as conn:
            stored = [row[0] for row in await conn.execute(sa.text("SELECT ciphertext FROM aibridge_provider_keys"))]
    finally:
        await engine.dispose()
    assert stored and not any(TEAM_KEY in c or SECOND_KEY in c for c in stored)
    key_file = env.server.db.data_dir / "secrets.key"       # no CODER_AIBRIDGE_SECRETS_KEY: the data dir's
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    # Deleted: its route is gone.
    assert (await env.owner.request("DELETE", f"{PROVIDERS}/team-openai"))[0] == 204
    status, body = await env.chat("team-openai")
    assert status == 404 and "not configured" in body["message"]
    assert (await env.owner.get(f"{PROVIDERS}/team-openai"))[0] == 404

    # Every change is in the audit log, the keys only as secret: true.
    status, audit = await env.owner.get("/api/v2/audit?q=resource_type:provider&limit=50")
    assert status == 200
    actions = [(a["action"], a["status_code"]) for a in audit["audit_logs"] if a["resource_target"] == "team-openai"]
    assert ("create", 201) in actions and ("delete", 204) in actions and ("create", 409) in actions
    assert ("write", 200) in actions and ("write", 400) in actions
    created = next(a for a in audit["audit_logs"] if a["action"] == "create" and a["status_code"] == 201
                   and a["resource_target"] == "team-openai")
    assert created["diff"]["api_keys"] == {"old": None, "new": None, "secret": True}
    assert created["diff"]["base_url"]["new"] == f"{env.team.url}/v1/"
    text = orjson.dumps(audit).decode()
    assert TEAM_KEY not in text and SECOND_KEY not in text


async def _scrape(server: ServerProcess) -> str:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://{server.env['CODER_PROMETHEUS_ADDRESS']}/metrics") as resp:
        return await resp.text()


def _info(name: str, status: str) -> str:
    return f'coder_aibridged_provider_info{{name="{name}",status="{status}",type="openai"}} 1.0'


@pytest.fixture
async def postgres() -> AsyncIterator[Database]:
    async with Database("postgres") as db:
        yield db


@needs_postgres
async def test_created_on_one_replica_serves_on_both_workers_of_another(postgres: Database) -> None:
    """No restart anywhere: both workers of replica A serve the provider A created as soon as the
    call answered, both of replica B within 1 s; disabled on A, B stops within 1 s; replica C,
    without the shared secrets key, shows it as ``error``."""
    async with FakeUpstream() as central, FakeUpstream(openai_key=TEAM_KEY) as team:
        base = {**bridge_env(central), "CODER_AIBRIDGE_SECRETS_KEY": SECRETS_KEY, "CODER_PROMETHEUS_ENABLE": "true"}
        a, b = [(await start_replicas(postgres, {**base, "CODER_AIBRIDGE_WORKERS": "2",
                                                 "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{free_port()}"}, 1))[0]
                for _ in range(2)]
        c = (await start_replicas(postgres, {**base, "CODER_AIBRIDGE_SECRETS_KEY": "",
                                             "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{free_port()}"}, 1))[0]
        try:
            token = next(r.admin_token for r in (a, b, c) if r.admin_token)
            owner_a = Client(a.url, token)
            member = (a if a.admin_token else b if b.admin_token else c).create_user("rpmember")
            env_b = Env(b, central, team, Client(b.url, token), member)
            assert (await env_b.chat("replicated"))[0] == 404
            env_a = Env(a, central, team, owner_a, member)
            assert (await owner_a.post(PROVIDERS, {**_team(env_b, "replicated")}))[0] == 201
            assert await statuses(env_a, "replicated") == [200] * 10     # at once, on both of A's workers

            async def served_on_b() -> bool:
                return await statuses(env_b, "replicated") == [200] * 10
            assert await wait_for(served_on_b, timeout=1.5, interval=0.1)    # every connection, both workers

            status, body = await Client(c.url, token).get(f"{PROVIDERS}/replicated")
            assert status == 200 and body["status"] == "error" and "decrypt" in body["error"], body
            env_c = Env(c, central, team, Client(c.url, token), member)
            status, body = await env_c.chat("replicated")
            assert status == 503 and "decrypt" in body["error"]["message"], body
            assert await wait_for(lambda: _has(c, _info("replicated", "error")), timeout=5)

            assert (await owner_a.request("PATCH", f"{PROVIDERS}/replicated", {"enabled": False}))[0] == 200
            assert await statuses(env_a, "replicated") == [403] * 10

            async def stopped_on_b() -> bool:
                return await statuses(env_b, "replicated") == [403] * 10
            assert await wait_for(stopped_on_b, timeout=1.5, interval=0.1)
            assert await wait_for(lambda: _has(b, _info("replicated", "disabled")), timeout=5)
            metrics = await _scrape(b)
            assert "coder_aibridged_providers_last_reload_success_timestamp_seconds" in metrics
        finally:
            for replica in (a, b, c):
                replica.stop()


async def statuses(env: Env, provider: str) -> list[int]:
    """Ten requests on fresh connections: both workers of ``--workers 2`` answer some of them."""
    return [s for s, _ in await asyncio.gather(*(env.chat(provider) for _ in range(10)))]


async def _has(server: ServerProcess, line: str) -> bool:
    return line in await _scrape(server)


BEDROCK = {"type": "anthropic", "name": "team-bedrock", "settings": {
    "bedrock_region": "us-east-1", "bedrock_access_key": "AKIATEAMBEDROCK0001", "bedrock_access_key_secret":
    "team-bedrock-secret-0123456789abcdef"}}


async def test_secrets_rotate(database: Database) -> None:
    """``aibridge secrets rotate`` re-encrypts every stored secret (keys and secret settings such as
    Bedrock's credentials) with the first key; the old one can go. A server with another key shows
    the providers as ``error`` and refuses a change that needs the old keys with a 409 (never a 500);
    replacing the keys repairs the provider."""
    old, new = SECRETS_KEY, base64.b64encode(os.urandom(32)).decode()
    async with FakeUpstream(openai_key=TEAM_KEY) as team:
        env = {"CODER_AIBRIDGE_SECRETS_KEY": old}
        server = await ServerProcess(database, env={**bridge_env(team), **env}).start()
        try:
            owner = Client(server.url, server.admin_token)
            made = {**_team(Env(server, team, team, owner, ""), "rotated")}
            assert (await owner.post(PROVIDERS, made))[0] == 201
            status, body = await owner.post(PROVIDERS, BEDROCK)
            assert status == 201 and body["status"] == "enabled", body
        finally:
            server.stop()
        rotated = run_cli(["secrets", "rotate"], {**server.env, "CODER_AIBRIDGE_SECRETS_KEY": f"{new},{old}"})
        assert rotated.returncode == 0 and "re-encrypted 3 stored secrets" in rotated.stdout, rotated.stderr
        server = await ServerProcess(database, env={**bridge_env(team), "CODER_AIBRIDGE_SECRETS_KEY": new}).start()
        try:
            member = server.create_user("rotmember")
            status, _ = await Env(server, team, team, Client(server.url, ""), member).chat("rotated")
            assert status == 200
            status, body = await Client(server.url, server.create_user("rotowner", "owner")).get(
                f"{PROVIDERS}/team-bedrock")
            assert status == 200 and body["status"] == "enabled", body
        finally:
            server.stop()
        bad = run_cli(["secrets", "rotate"], {**server.env, "CODER_AIBRIDGE_SECRETS_KEY": "not-a-key"})
        assert bad.returncode == 2 and "32 random bytes" in bad.stderr

        # The key is lost: a server with another one cannot decrypt, says so, and takes new keys.
        lost = base64.b64encode(os.urandom(32)).decode()
        server = await ServerProcess(database, env={**bridge_env(team), "CODER_AIBRIDGE_SECRETS_KEY": lost}).start()
        try:
            owner = Client(server.url, server.create_user("lostowner", "owner"))
            status, body = await owner.get(f"{PROVIDERS}/rotated")
            assert status == 200 and body["status"] == "error" and "decrypt" in body["error"], body
            for ref in ("rotated", "team-bedrock"):
                status, body = await owner.request("PATCH", f"{PROVIDERS}/{ref}", {"enabled": False})
                assert status == 409 and "decrypt" in body["message"], body
            status, body = await owner.request("PATCH", f"{PROVIDERS}/rotated", {"api_keys": [{"api_key": TEAM_KEY}]})
            assert status == 200 and body["status"] == "enabled", body
            member = server.create_user("lostmember")
            assert (await Env(server, team, team, owner, member).chat("rotated"))[0] == 200
        finally:
            server.stop()


async def test_enabled_without_providers_starts_and_serves_one_created_later(database: Database) -> None:
    """No provider configured is no longer a start-up error: the server says so, and serves what the API adds."""
    async with FakeUpstream(openai_key=TEAM_KEY) as team:
        server = await ServerProcess(database, env={"CODER_AIBRIDGE_ENABLED": "true"}).start()
        try:
            assert "serves no provider" in server.output() and "aibridge providers create" in server.output()
            owner = Client(server.url, server.admin_token)
            env = Env(server, team, team, owner, server.create_user("lateuser"))
            status, body = await env.chat("openai")
            assert status == 404 and "Configured providers: none" in body["detail"]
            assert (await owner.post(PROVIDERS, _team(env, "openai")))[0] == 201
            assert (await env.chat("openai"))[0] == 200
        finally:
            server.stop()


async def test_the_proxy_decrypts_the_host_of_a_provider_created_later(database: Database) -> None:
    """Only Anthropic configured: the proxy tunnels api.openai.com blindly, until an owner creates an
    OpenAI provider; then the official SDK through the proxy reaches it, with that provider's key."""
    async with FakeUpstream(openai_key=TEAM_KEY) as team:
        port = free_port()
        env = {**proxy_env(team, port), "CODER_AIBRIDGE_OPENAI_KEY": ""}
        server = await ServerProcess(database, env=env).start()
        try:
            await wait_listening(port)
            proxied = Proxied(server, team, port, server.create_user("proxyuser"),
                              database.data_dir / "proxy" / "ca.pem")
            assert "api.openai.com" not in server.output().split("decrypting", 1)[1].split("\n", 1)[0]
            owner = Client(server.url, server.admin_token)
            made = {**_team(Env(server, team, team, owner, ""), "openai")}
            assert (await owner.post(PROVIDERS, made))[0] == 201
            result = await run_sdk(proxied, "openai", "gpt-4.1-scenario-simple", "created later")
            assert result["blocking"] and result["chunks"] > 1
            assert team.requests[-1].headers["Authorization"] == f"Bearer {TEAM_KEY}"
        finally:
            server.stop()
