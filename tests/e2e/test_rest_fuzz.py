"""The REST API against its own OpenAPI document (schemathesis), and the bridge routes against
random and malformed requests: no server errors, every REST answer as documented."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest

from tests.e2e.conftest import Bridge, bridge_env
from tests.e2e.test_hardening import raw_request
from tests.fakes.upstream import FakeUpstream
from tests.harness import Database, ServerProcess, free_port

BRIDGE = "/api/v2/aibridge"


@pytest.fixture(scope="module")
async def bridge(module_database: Database) -> AsyncIterator[Bridge]:
    """The shared bridge fixture, with every optional REST route on: ``/metrics`` on the main port
    and the proxy (its CA route), so schemathesis reaches every route the document lists."""
    fake = FakeUpstream()
    await fake.start()
    server = await ServerProcess(module_database, env={
        **bridge_env(fake), "CODER_PROMETHEUS_ENABLE": "true", "CODER_PROMETHEUS_ADDRESS": "127.0.0.1:0",
        "CODER_AIBRIDGE_PROXY_ENABLED": "true", "CODER_AIBRIDGE_PROXY_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
    }).start()
    try:
        yield Bridge(server, fake, server.create_user("alice"), server.create_user("bob"))
    finally:
        server.stop()
        await fake.stop()


async def make_records(bridge: Bridge) -> None:
    """Something for the export and session routes to answer with (a tool call, a session id)."""
    client = openai.AsyncOpenAI(base_url=bridge.openai_url, api_key=bridge.token, max_retries=0,
                                default_headers={"session-id": "fuzz-session-1"})
    await client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "fuzz me"}])


async def test_openapi_document_is_served_without_a_token(bridge: Bridge) -> None:
    async with aiohttp.ClientSession() as session, session.get(bridge.server.url + "/api/v2/openapi.json") as resp:
        assert resp.status == 200
        document = orjson.loads(await resp.read())
    assert document["openapi"].startswith("3.1")
    for path in ("/api/v2/users/{user}/status/{action}", "/api/v2/aibridge/interceptions", "/api/v2/users/{user}",
                 "/metrics", "/api/v2/aibridge/spend", "/api/v2/ai-gateway/proxy/ca-cert.pem"):
        assert path in document["paths"]


async def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(bridge: Bridge, tmp_path: Path) -> None:
    await make_records(bridge)
    owner = bridge.server.create_user("fuzz-owner", role="owner")
    command = [
        str(Path(sys.executable).with_name("st")), "run", bridge.server.url + "/api/v2/openapi.json",
        "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--header", f"Authorization: Bearer {owner}",
        # Browser flows, not REST: signing out revokes the token that asks (the rest of the run would
        # have none), and the OIDC sign-in and callback answer with redirects and HTML pages.
        "--exclude-path-regex", "^/api/v2/users/(logout|oidc/.*)$",
        "--max-examples", "8", "--seed", "11", "--workers", "1", "--no-shrink",
        "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
        "--request-timeout", "20", "--no-color", "--report-dir", str(tmp_path),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=400,
                                   check=False, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or " passed" in done.stdout, done.stdout[-3000:]
    print(done.stdout[-3000:])
    assert "Traceback" not in bridge.server.output(), bridge.server.output()[-4000:]


# ---------------------------------------------------------------- the bridge routes, fuzzed

ROUTES = ("/openai/v1/chat/completions", "/openai/v1/responses", "/anthropic/v1/messages",
          "/anthropic/v1/messages/count_tokens", "/openai/v1/models", "/openai/v1/responses/resp_1")

# Passthrough routes with a documented method: the upstream answers them, in its own words.
RELAYED = {("GET", "/openai/v1/models"), ("GET", "/openai/v1/responses/resp_1"),
           ("DELETE", "/openai/v1/responses/resp_1"), ("POST", "/anthropic/v1/messages/count_tokens")}


def random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**62, 1.5e308, ""])
    if kind == 2:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)])) for _ in range(8))
    if kind in (3, 4):
        return rng.choice(["gpt-4.1", "claude-x", "user", "assistant", "system", "text", "tool_use", "image"])
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["model", "messages", "input", "stream", "max_tokens", "tools", "role", "content", "type",
            "stream_options", "system", "tool_choice", "metadata", "instructions"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(1, 6))}


def random_body(rng: random.Random) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    if choice == 1:
        return b'{"model": "gpt-4.1", "messages": [' * rng.randrange(1, 4)
    base = {"model": rng.choice(["gpt-4.1", "claude-x", 5, None]), "max_tokens": rng.choice([5, -1, "x"]),
            "messages": rng.choice([[{"role": "user", "content": random_json(rng)}], random_json(rng), []]),
            "input": random_json(rng), "stream": rng.choice([True, False, "yes", None])}
    if choice == 2 and isinstance(extra := random_json(rng), dict):
        base.update(extra)
    return orjson.dumps(random_json(rng) if choice == 3 else base)


def fresh_token(bridge: Bridge, username: str) -> str:
    """A user of this test's own, made with the CLI: schemathesis, run before with an owner's token,
    may have suspended or deleted any user it found (the fixture's and the first owner included)."""
    assert bridge.server.cli("users", "create", username).returncode == 0
    made = bridge.server.cli("tokens", "create", username)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


async def test_fuzzed_bridge_requests_never_get_a_server_error(bridge: Bridge) -> None:
    rng = random.Random(20261202)
    token = fresh_token(bridge, "bridge-fuzzer")
    headers_pool = [{"Content-Type": "application/json"}, {"Content-Type": "text/plain"},
                    {"Content-Encoding": "gzip"}, {"anthropic-version": "\u00e9t\u00e9"},
                    {"X-Claude-Code-Session-Id": "s" * 300}, {"session-id": ""}, {"User-Agent": ""}]
    seen: dict[int, int] = {}
    for _ in range(120):
        route = rng.choice(ROUTES)
        method = rng.choice(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH"])
        headers = {"Authorization": f"Bearer {rng.choice([token, token, 'x', token[:-2]])}"}
        headers.update(rng.choice(headers_pool))
        sent = headers["Authorization"].removeprefix("Bearer ")
        relayed = sent == token and (method, route) in RELAYED
        status, payload = await raw_request(bridge.server.url, method, BRIDGE + route, headers, random_body(rng))
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (method, route, headers, status, payload[:300], bridge.server.output()[-3000:])
        if status >= 400 and not relayed:
            # The bridge's own refusal (not an upstream answer relayed): JSON the client can read.
            assert payload[:1] == b"{", (method, route, headers, status, payload[:300])
            body = orjson.loads(payload)
            assert isinstance(body, dict) and ("error" in body or "message" in body), payload[:300]
    assert len(seen) >= 3, seen                   # the fuzzing reached several outcomes
    assert "Traceback" not in bridge.server.output(), bridge.server.output()[-4000:]
