"""Revocation is immediate (DESIGN §2.6): a change to a token, a user or a governance rule applies
to the very next request on every worker of the server that made it, and within 1 s on every
other worker and replica (a CLI writing the database directly, another replica on PostgreSQL).

Each check sends several requests on fresh connections, so both workers of ``--workers 2`` answer
some of them (the kernel spreads connections over the workers' sockets).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.conftest import bridge_env
from tests.e2e.test_limits import chat
from tests.e2e.test_replicas import start_replicas
from tests.fakes.upstream import FakeUpstream
from tests.harness import POSTGRES_URL, Client, Database, ServerProcess

SPREAD = 10          # requests per check: all ten on one of two workers is a 1-in-512 chance
WITHIN = 1.0         # DESIGN §2.6: every replica within 1 s


@pytest.fixture
async def fake() -> Any:
    async with FakeUpstream() as upstream:
        yield upstream


async def chat_statuses(server: ServerProcess, token: str, model: str = "gpt-4.1") -> list[int]:
    return [r[0] for r in await asyncio.gather(*(chat(server, token, model) for _ in range(SPREAD)))]


async def me_statuses(server: ServerProcess, token: str) -> list[int]:
    """Authenticated REST reads (not recorded, so the user can still be deleted)."""
    client = Client(server.url, token)
    return [r[0] for r in await asyncio.gather(*(client.get("/api/v2/users/me") for _ in range(SPREAD)))]


async def two_workers(database: Database, fake: FakeUpstream, **env: str) -> ServerProcess:
    return await ServerProcess(database, env={**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": "2", **env}).start()


async def test_token_and_user_changes_through_rest_reach_both_workers_at_once(database: Database,
                                                                              fake: FakeUpstream) -> None:
    server = await two_workers(database, fake)
    try:
        owner = Client(server.url, server.admin_token)
        revoked, suspended, deleted = (server.create_user(name) for name in ("rory", "suzy", "dell"))
        assert await chat_statuses(server, revoked) == [200] * SPREAD          # cached on both workers
        assert await chat_statuses(server, suspended) == [200] * SPREAD
        assert await me_statuses(server, deleted) == [200] * SPREAD

        status, _ = await owner.request("DELETE", f"/api/v2/users/rory/keys/{revoked.split('-')[0]}")
        assert status == 204
        assert await chat_statuses(server, revoked) == [403] * SPREAD

        assert (await owner.post("/api/v2/users/suzy/status/suspend"))[0] == 200
        assert await chat_statuses(server, suspended) == [403] * SPREAD
        assert (await owner.post("/api/v2/users/suzy/status/activate"))[0] == 200
        assert await chat_statuses(server, suspended) == [200] * SPREAD        # and back at once

        assert (await owner.request("DELETE", "/api/v2/users/dell"))[0] == 204
        assert await me_statuses(server, deleted) == [403] * SPREAD
    finally:
        assert server.stop() == 0


async def test_governance_changes_through_rest_reach_both_workers_at_once(database: Database,
                                                                          fake: FakeUpstream) -> None:
    server = await two_workers(database, fake)
    try:
        owner = Client(server.url, server.admin_token)
        token = server.create_user("gwen")
        assert await chat_statuses(server, token) == [200] * SPREAD            # rules read on both workers

        status, _ = await owner.request("PUT", "/api/v2/aibridge/model-rules", {
            "aliases": [{"from": "gpt-4.1", "to": "gpt-4o-mini", "provider": "openai"}]})
        assert status == 200
        before = len(fake.requests_to("/v1/chat/completions"))
        assert await chat_statuses(server, token) == [200] * SPREAD
        sent = [r.json["model"] for r in fake.requests_to("/v1/chat/completions")[before:]]
        assert sent == ["gpt-4o-mini"] * SPREAD

        status, _ = await owner.request("PUT", "/api/v2/aibridge/model-rules", {
            "allow": [{"user": "gwen", "models": ["claude-*"]}]})
        assert status == 200
        assert await chat_statuses(server, token) == [403] * SPREAD
        status, _ = await owner.request("PUT", "/api/v2/aibridge/model-rules", {
            "allow": [{"user": "gwen", "models": None}]})
        assert status == 200
        assert await chat_statuses(server, token) == [200] * SPREAD

        status, _ = await owner.request("PUT", "/api/v2/aibridge/budgets/user:gwen",
                                        {"period": "day", "limit_usd": 0})
        assert status == 200
        assert await chat_statuses(server, token) == [403] * SPREAD
    finally:
        assert server.stop() == 0


async def test_a_cli_change_reaches_every_worker_within_a_second(database: Database, fake: FakeUpstream) -> None:
    """The CLI writes the database directly (no server involved)."""
    server = await two_workers(database, fake)
    try:
        token, other = server.create_user("cleo"), server.create_user("otto")
        assert await chat_statuses(server, token) == [200] * SPREAD
        assert await chat_statuses(server, other) == [200] * SPREAD

        done = server.cli("users", "suspend", "cleo")
        assert done.returncode == 0, done.stderr
        await asyncio.sleep(WITHIN)
        assert await chat_statuses(server, token) == [403] * SPREAD

        done = server.cli("tokens", "revoke", other.split("-")[0])
        assert done.returncode == 0, done.stderr
        await asyncio.sleep(WITHIN)
        assert await chat_statuses(server, other) == [403] * SPREAD
    finally:
        assert server.stop() == 0


@pytest.mark.skipif(not POSTGRES_URL, reason="replicas share one PostgreSQL: set AIBRIDGE_TEST_POSTGRES_URL")
async def test_a_change_on_one_replica_reaches_the_other_within_a_second(fake: FakeUpstream) -> None:
    async with Database("postgres") as postgres:
        first, second = await start_replicas(postgres, bridge_env(fake), 2)
        try:
            owner_token = first.admin_token or second.admin_token
            owner = Client(first.url, owner_token)
            token = first.create_user("rhea") if first.admin_token else second.create_user("rhea")
            assert [(await chat(second, token))[0] for _ in range(3)] == [200] * 3   # cached on the second

            status, _ = await owner.request("PUT", "/api/v2/aibridge/model-rules", {
                "allow": [{"user": "rhea", "models": ["claude-*"]}]})
            assert status == 200
            await asyncio.sleep(WITHIN)
            assert (await chat(second, token))[0] == 403

            assert (await owner.request("DELETE", f"/api/v2/users/rhea/keys/{token.split('-')[0]}"))[0] == 204
            await asyncio.sleep(WITHIN)
            status, body = await Client(second.url, token).get("/api/v2/users/me")
            assert status == 403 and "revoked" in body["message"]
        finally:
            first.stop()
            second.stop()
