"""Rate limits (in process and shared through Redis), the concurrency limit and the circuit breaker."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import bridge_env
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess

REDIS_URL = os.environ.get("AIBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def chat(server: ServerProcess, token: str, model: str = "gpt-4.1",
               headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.post(
            f"{server.url}/api/v2/aibridge/openai/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {token}", **(headers or {})}) as resp:
        return resp.status, orjson.loads(await resp.read()), dict(resp.headers)


async def next_second() -> None:
    """Start a burst at the beginning of a one-second window, so it falls in one window."""
    await asyncio.sleep(1 - (time.time() % 1) + 0.01)


@pytest.fixture
async def fake() -> Any:
    async with FakeUpstream() as upstream:
        yield upstream


async def test_rate_limit_per_token(database: Database, fake: FakeUpstream) -> None:
    server = await ServerProcess(database, env={**bridge_env(fake), "CODER_AIBRIDGE_RATE_LIMIT": "2",
                                                "CODER_PROMETHEUS_ENABLE": "true",
                                                "CODER_PROMETHEUS_ADDRESS": "127.0.0.1:0"}).start()
    try:
        alice, bob = server.create_user("alice"), server.create_user("bob")
        await next_second()
        results = await asyncio.gather(*(chat(server, alice) for _ in range(6)))
        statuses = sorted(r[0] for r in results)
        assert statuses == [200, 200, 429, 429, 429, 429], statuses
        _, body, headers = next(r for r in results if r[0] == 429)
        assert body["error"]["type"] == "rate_limit_error" and "2 requests per second" in body["error"]["message"]
        assert headers["Retry-After"] == "1"
        assert (await chat(server, bob))[0] == 200               # another token has its own budget
        await next_second()
        assert (await chat(server, alice))[0] == 200             # and the window moves on
        assert len(fake.requests_to("/v1/chat/completions")) == 4  # refused requests never went upstream
        owner = {"Authorization": f"Bearer {server.admin_token}"}
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics", headers=owner) as resp:
            text = await resp.text()
        assert 'coder_aibridged_rate_limited_total{provider="openai",reason="rate_limit"} 4.0' in text
    finally:
        server.stop()


async def test_rate_limit_counts_per_user_not_per_token(database: Database, fake: FakeUpstream) -> None:
    """Issue 20: six fresh tokens of one member sent 18 requests in 1 s under a 3/s limit, all 200."""
    server = await ServerProcess(database, env={**bridge_env(fake), "CODER_AIBRIDGE_RATE_LIMIT": "3"}).start()
    try:
        server.create_user("mint")
        owner = Client(server.url, server.admin_token)
        tokens = [(await owner.post("/api/v2/users/mint/keys/tokens", {}))[1]["key"] for _ in range(6)]
        await next_second()
        results = await asyncio.gather(*(chat(server, token) for token in tokens * 3))
        assert sorted(r[0] for r in results) == [200] * 3 + [429] * 15
        _, body, _ = next(r for r in results if r[0] == 429)
        assert "3 requests per second per user" in body["error"]["message"]
    finally:
        server.stop()


async def test_live_tokens_per_user_are_capped(database: Database, fake: FakeUpstream) -> None:
    server = await ServerProcess(database, env={**bridge_env(fake), "CODER_MAX_TOKENS_PER_USER": "2"}).start()
    try:
        first = server.create_user("capped")                        # one live token
        owner = Client(server.url, server.admin_token)
        assert (await owner.post("/api/v2/users/capped/keys/tokens", {}))[0] == 201      # two: the cap
        status, body = await owner.post("/api/v2/users/capped/keys/tokens", {})
        assert status == 409, body
        assert "2 live API tokens" in body["message"] and "CODER_MAX_TOKENS_PER_USER = 2" in body["message"]
        assert "DELETE /api/v2/users/capped/keys/{id}" in body["detail"]
        done = server.cli("tokens", "create", "capped")
        assert done.returncode != 0 and done.stdout == ""
        error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and "--max-tokens-per-user" in error[0] and "aibridge tokens revoke" in error[0]

        status, _ = await owner.request("DELETE", f"/api/v2/users/capped/keys/{first.split('-')[0]}")
        assert status == 204                                        # a revoked token is not live
        assert (await owner.post("/api/v2/users/capped/keys/tokens", {"lifetime": "2s"}))[0] == 201
        assert (await owner.post("/api/v2/users/capped/keys/tokens", {}))[0] == 409
        await asyncio.sleep(2.1)                                    # nor is an expired one
        done = server.cli("tokens", "create", "capped")
        assert done.returncode == 0, done.stderr
        assert (await chat(server, done.stdout.strip()))[0] == 200
    finally:
        server.stop()


async def test_rate_limit_is_shared_by_replicas_through_redis(database: Database, fake: FakeUpstream) -> None:
    env = {**bridge_env(fake), "CODER_AIBRIDGE_RATE_LIMIT": "3", "CODER_AIBRIDGE_REDIS_URL": REDIS_URL}
    first = await ServerProcess(database, env=env).start()
    second = await ServerProcess(database, env=env).start()
    try:
        token = first.create_user("carol")
        await chat(second, token)                                # warm both auth caches and Redis connections
        await chat(first, token)
        await next_second()
        results = await asyncio.gather(*(chat(server, token) for server in (first, second) * 4))
        assert sum(r[0] == 200 for r in results) == 3, [r[0] for r in results]
        assert sum(r[0] == 429 for r in results) == 5
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            me = (await Client(first.url, token).get("/api/v2/users/me"))[1]
            keys = await client.keys(f"aibridge:rate:{me['id']}:*")
            assert keys
            for key in keys:
                assert 0 < await client.ttl(key) <= 2
        finally:
            await client.aclose()
    finally:
        first.stop()
        second.stop()


async def test_redis_outage_lets_requests_through(database: Database, fake: FakeUpstream) -> None:
    env = {**bridge_env(fake), "CODER_AIBRIDGE_RATE_LIMIT": "100", "CODER_AIBRIDGE_REDIS_URL": "redis://127.0.0.1:1/0"}
    server = await ServerProcess(database, env=env).start()
    try:
        token = server.create_user("dora")
        assert (await chat(server, token))[0] == 200
        assert "rate limiter cannot reach Redis" in server.output()
    finally:
        server.stop()


async def test_concurrency_limit(database: Database, fake: FakeUpstream) -> None:
    server = await ServerProcess(database, env={**bridge_env(fake), "CODER_AIBRIDGE_MAX_CONCURRENCY": "1"}).start()
    try:
        token = server.create_user("erin")
        async with aiohttp.ClientSession() as session:
            slow = await session.post(f"{server.url}/api/v2/aibridge/anthropic/v1/messages",
                                      headers={"x-api-key": token},
                                      json={"model": "claude-scenario-slow", "max_tokens": 10, "stream": True,
                                            "messages": [{"role": "user", "content": "slowly"}]})
            await slow.content.readuntil(b"content_block_delta")
            status, body, headers = await chat(server, token)
            assert status == 503 and "concurrency limit (1)" in body["error"]["message"]
            assert headers["Retry-After"] == "1"
            slow.close()
        for _ in range(100):                                     # the slot frees when the stream ends
            status, _, _ = await chat(server, token)
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert status == 200
    finally:
        server.stop()


async def test_circuit_breaker_opens_half_opens_and_closes(database: Database, fake: FakeUpstream) -> None:
    env = {**bridge_env(fake), "CODER_AIBRIDGE_CIRCUIT_BREAKER_ENABLED": "true",
           "CODER_AIBRIDGE_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "2", "CODER_AIBRIDGE_CIRCUIT_BREAKER_TIMEOUT": "1s",
           "CODER_AIBRIDGE_CIRCUIT_BREAKER_MAX_REQUESTS": "1", "CODER_PROMETHEUS_ENABLE": "true",
           "CODER_PROMETHEUS_ADDRESS": "127.0.0.1:0"}
    server = await ServerProcess(database, env=env).start()
    failing = {"x-fake-scenario": "http_error"}
    try:
        token = server.create_user("finn")
        assert [(await chat(server, token, "gpt-flaky", failing))[0] for _ in range(2)] == [429, 429]
        sent = len(fake.requests_to("/v1/chat/completions"))
        status, body, headers = await chat(server, token, "gpt-flaky", failing)
        assert status == 503 and "circuit breaker open" in body["error"]["message"]
        assert int(headers["Retry-After"]) >= 1
        assert len(fake.requests_to("/v1/chat/completions")) == sent       # not sent upstream
        assert (await chat(server, token, "gpt-other"))[0] == 200          # other models are not affected

        await asyncio.sleep(1.1)                                           # half-open: one trial, it fails
        assert (await chat(server, token, "gpt-flaky", failing))[0] == 429
        assert (await chat(server, token, "gpt-flaky"))[0] == 503          # open again
        await asyncio.sleep(1.1)                                           # a successful trial closes it
        assert (await chat(server, token, "gpt-flaky"))[0] == 200
        assert (await chat(server, token, "gpt-flaky"))[0] == 200

        owner = {"Authorization": f"Bearer {server.admin_token}"}
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics", headers=owner) as resp:
            text = await resp.text()
        labels = {"provider": "openai", "endpoint": "/v1/chat/completions", "model": "gpt-flaky"}
        samples = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
                   if s.labels == labels}
        assert samples["coder_aibridged_circuit_breaker_trips_total"] == 2
        assert samples["coder_aibridged_circuit_breaker_rejects_total"] == 2
        assert samples["coder_aibridged_circuit_breaker_state"] == 0
    finally:
        server.stop()
