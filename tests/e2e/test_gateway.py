"""Today's clients and names: the ``/api/v2/ai-gateway/…`` routes, rate-limit headers relayed,
``retry-after`` on our own refusals, and Codex's WebSocket upgrade refused at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson
import pytest

from tests.e2e.conftest import Bridge, bridge_env
from tests.e2e.records import ids, latest
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess

TIMEOUT = aiohttp.ClientTimeout(total=30)
GATEWAY = "/api/v2/ai-gateway"
# Codex's upgrade request, as captured (../shared/captures/codex_exec_builtin_codexkey/).
CODEX_UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "IDLvp9iBCUFpsC502sTa7w==", "openai-beta": "responses_websockets=2026-02-06",
                 "originator": "codex_exec", "User-Agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64) xterm"}


async def call(method: str, url: str, token: str | None = None, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any, Mapping[str, str]]:
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.request(
            method, url, headers=sent, data=orjson.dumps(body) if body is not None else None) as resp:
        raw = await resp.read()
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = raw
        return resp.status, payload, resp.headers


def chat(model: str, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


async def test_ai_gateway_routes_are_aliases(bridge: Bridge) -> None:
    url = bridge.server.url
    before = await ids(bridge.owner())
    status, body, _ = await call("POST", f"{url}{GATEWAY}/openai/v1/chat/completions", bridge.token,
                                 chat("gpt-4.1-scenario-simple"))
    assert status == 200 and body["object"] == "chat.completion"
    found = await latest(Client(url, bridge.token), "initiator:me", after=before)
    assert found["provider"] == "openai" and found["user_prompts"][0]["prompt"] == "hi"
    # aiohttp is no known AI tool: recorded as Unknown, with its user agent
    assert found["client"] == "Unknown" and found["metadata"]["user_agent"].startswith("Python/")
    # the REST routes too, with the same answers and the same authentication
    for path in ("/interceptions?limit=5", "/sessions", "/clients", "/models"):
        primary = await Client(url, bridge.token).get("/api/v2/aibridge" + path)
        alias = await Client(url, bridge.token).get(GATEWAY + path)
        assert alias == primary, path
    status, _, _ = await call("GET", f"{url}{GATEWAY}/interceptions")
    assert status == 401
    status, body, _ = await call("GET", f"{url}{GATEWAY}/openai/v1/nothing-here", bridge.token)
    assert status == 404 and "route not supported" in body["error"]["message"]


@pytest.mark.parametrize(("provider", "path", "body"), [
    ("anthropic", "/v1/messages", {"model": "claude-sonnet-4-5-scenario-http_error", "max_tokens": 10,
                                   "messages": [{"role": "user", "content": "hi"}]}),
    ("openai", "/v1/chat/completions", chat("gpt-4.1-scenario-http_error")),
])
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_rate_limit_headers_are_relayed(bridge: Bridge, provider: str, path: str,
                                                       body: dict[str, Any], stream: bool) -> None:
    status, _, headers = await call("POST", f"{bridge.server.url}/api/v2/aibridge/{provider}{path}", bridge.token,
                                    {**body, "stream": stream})
    assert status == 429
    prefix = "anthropic-ratelimit-" if provider == "anthropic" else "x-ratelimit-"
    assert headers["retry-after"] == ("17" if provider == "anthropic" else "2")
    assert any(name.lower().startswith(prefix) for name in headers)


async def test_codex_websocket_upgrade_is_refused_at_once(bridge: Bridge) -> None:
    before = await ids(bridge.owner())
    requests_before = len(bridge.fake.requests)
    for path in ("/api/v2/aibridge/openai/v1/responses", f"{GATEWAY}/openai/v1/responses"):
        status, body, _ = await call("GET", bridge.server.url + path, bridge.token, headers=CODEX_UPGRADE)
        assert status == 426, body          # Codex falls back to POST at once on 426 (a 404 is retried)
        assert body["error"]["message"].startswith("WebSocket transport is not supported")
    assert len(bridge.fake.requests) == requests_before           # nothing went upstream
    # nothing recorded (earlier tests' records may still be landing: look only at this route)
    status, found = await bridge.owner().get("/api/v2/aibridge/interceptions?limit=50")
    assert status == 200
    new = [r for r in found["results"] if r["id"] not in before]
    assert [r for r in new if r["metadata"].get("route") == "/v1/responses"] == []


@pytest.fixture(scope="module")
async def limited(module_database: Database) -> AsyncIterator[ServerProcess]:
    fake = FakeUpstream()
    await fake.start()
    server = await ServerProcess(module_database, env={**bridge_env(fake), "CODER_AIBRIDGE_RATE_LIMIT": "1",
                                                       "CODER_AIBRIDGE_MAX_CONCURRENCY": "1"}).start()
    try:
        yield server
    finally:
        server.stop()
        await fake.stop()


async def test_our_own_429_and_503_carry_retry_after(limited: ServerProcess) -> None:
    url = f"{limited.url}/api/v2/aibridge/openai/v1/chat/completions"
    slow, other, quick = (limited.create_user(name) for name in ("dave", "erin", "carol"))
    stream_body = chat("gpt-4.1-scenario-slow", stream=True)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.post(
            url, headers={"Authorization": f"Bearer {slow}"}, json=stream_body) as streaming:
        assert streaming.status == 200
        await streaming.content.readany()             # in flight: the one slot is taken
        status, body, headers = await call("POST", url, other, chat("gpt-4.1-scenario-simple"))
        assert status == 503 and "concurrency" in body["error"]["message"]
        assert int(headers["retry-after"]) >= 1
    statuses = []
    for _ in range(3):
        status, body, headers = await call("POST", url, quick, chat("gpt-4.1-scenario-simple"))
        statuses.append(status)
        if status == 429:
            assert "rate limit" in body["error"]["message"] and int(headers["retry-after"]) >= 1
    assert 429 in statuses
