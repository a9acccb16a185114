"""One path for every request (issue 20): passthrough as a flow, stored-object isolation, names.

Passed-through routes (model lists, token counting, stored responses and conversations) go
through the same guards as intercepted ones: rate and concurrency limits, model rules when they
name a model, actor headers, and through the proxy door too. Responses and conversations made
through the bridge belong to the user who made them. Model names and path parameters are checked
before any rule.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from tests.e2e.conftest import bridge_env
from tests.e2e.records import ids
from tests.fakes.upstream import RESPONSE_ID_HEADER, FakeUpstream
from tests.harness import Client, Database, ServerProcess, free_port, wait_for

OPENAI = "/api/v2/aibridge/openai"
ANTHROPIC = "/api/v2/aibridge/anthropic"

# Every passed-through route, as (method, path under the bridge, JSON body or None).
PASSTHROUGH: list[tuple[str, str, Any]] = [
    ("GET", f"{OPENAI}/v1/models", None),
    ("GET", f"{OPENAI}/v1/models/gpt-4.1", None),
    ("POST", f"{ANTHROPIC}/v1/messages/count_tokens",
     {"model": "claude-sonnet-4-5-20250929", "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", f"{OPENAI}/v1/responses/input_tokens", {"model": "gpt-4.1", "input": "hi"}),
    ("GET", f"{OPENAI}/v1/responses/resp_madeelsewhere", None),
    ("DELETE", f"{OPENAI}/v1/responses/resp_madeelsewhere", None),
    ("POST", f"{OPENAI}/v1/conversations", {}),
    ("POST", f"{ANTHROPIC}/api/event_logging/batch", {"events": []}),
]


def auth(path: str, token: str) -> dict[str, str]:
    return {"x-api-key": token} if path.startswith(ANTHROPIC) else {"Authorization": f"Bearer {token}"}


async def call(url: str, method: str, path: str, token: str, body: Any = None,
               headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.request(
            method, url + path, data=None if body is None else orjson.dumps(body),
            headers={**auth(path, token), "Content-Type": "application/json", **(headers or {})}, **kw) as resp:
        raw = await resp.read()
        try:
            payload = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            payload = raw.decode(errors="replace")
        return resp.status, payload, dict(resp.headers)


async def next_second() -> None:
    await asyncio.sleep(1 - (time.time() % 1) + 0.01)


# ---------------------------------------------------------------- 1.1 passthrough is a flow

@dataclass
class Guarded:
    server: ServerProcess
    fake: FakeUpstream
    proxy_port: int
    token: str

    @property
    def ca(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.server.db.data_dir / "proxy" / "ca.pem"))


@pytest.fixture
async def guarded(database: Database) -> AsyncIterator[Guarded]:
    """Rate limit 2/s, actor headers, the proxy: every guard a passed-through request must meet."""
    fake = FakeUpstream()
    await fake.start()
    port = free_port()
    server = await ServerProcess(database, env={
        **bridge_env(fake), "CODER_AIBRIDGE_RATE_LIMIT": "2", "CODER_AIBRIDGE_SEND_ACTOR_HEADERS": "true",
        "CODER_AIBRIDGE_PROXY_ENABLED": "true", "CODER_AIBRIDGE_PROXY_LISTEN_ADDR": f"127.0.0.1:{port}"}).start()
    try:
        yield Guarded(server, fake, port, server.create_user("rita"))
    finally:
        server.stop()
        await fake.stop()


@pytest.mark.parametrize(("method", "path", "body"), PASSTHROUGH, ids=[f"{m} {p}" for m, p, _ in PASSTHROUGH])
async def test_passthrough_meets_the_rate_limit(guarded: Guarded, method: str, path: str, body: Any) -> None:
    await next_second()
    results = await asyncio.gather(*(call(guarded.server.url, method, path, guarded.token, body)
                                     for _ in range(12)))
    statuses = [r[0] for r in results]
    assert statuses.count(429) >= 8, statuses
    _, error, headers = next(r for r in results if r[0] == 429)
    assert headers["Retry-After"] == "1"
    assert "rate limit exceeded" in (error["error"]["message"])


async def test_passthrough_sends_actor_headers_and_is_not_recorded(guarded: Guarded) -> None:
    guarded.fake.clear()
    status, _, _ = await call(guarded.server.url, "GET", f"{OPENAI}/v1/models", guarded.token)
    assert status == 200
    sent = guarded.fake.requests_to("/v1/models")[-1]
    assert sent.headers.get("X-AI-Bridge-Actor-Metadata-Username") == "rita"
    assert sent.headers.get("X-AI-Bridge-Actor-ID")
    assert await ids(Client(guarded.server.url, guarded.server.admin_token)) == set()


async def test_passthrough_through_the_proxy_meets_the_rate_limit(guarded: Guarded) -> None:
    proxy = f"http://coder:{guarded.token}@127.0.0.1:{guarded.proxy_port}"
    await next_second()
    results = await asyncio.gather(*(call("https://api.openai.com", "GET", "/v1/models", "sk-developers-own",
                                          proxy=proxy, ssl=guarded.ca) for _ in range(12)))
    statuses = [r[0] for r in results]
    assert statuses.count(429) >= 8, statuses
    sent = guarded.fake.requests_to("/v1/models")[-1]
    assert sent.headers.get("X-AI-Bridge-Actor-Metadata-Username") == "rita"
    # model rules too: a model rita may not use is refused through the proxy as on the direct routes
    owner = Client(guarded.server.url, guarded.server.admin_token)
    assert (await owner.request("PUT", "/api/v2/aibridge/model-rules",
                                {"allow": [{"user": "rita", "models": ["gpt-5*"]}]}))[0] == 200
    await next_second()
    status, body, _ = await call("https://api.openai.com", "GET", "/v1/models/gpt-4.1", "sk-developers-own",
                                 proxy=proxy, ssl=guarded.ca)
    assert status == 403 and "'gpt-4.1' is not allowed" in body["error"]["message"], body


async def test_passthrough_holds_a_concurrency_slot(database: Database) -> None:
    async with FakeUpstream() as fake:
        server = await ServerProcess(database, env={**bridge_env(fake), "CODER_AIBRIDGE_MAX_CONCURRENCY": "1"}).start()
        try:
            token = server.create_user("cody")
            async with aiohttp.ClientSession() as session:
                slow = await session.post(f"{server.url}{ANTHROPIC}/v1/messages", headers={"x-api-key": token},
                                          json={"model": "claude-scenario-slow", "max_tokens": 10, "stream": True,
                                                "messages": [{"role": "user", "content": "slowly"}]})
                await slow.content.readuntil(b"content_block_delta")
                status, body, _ = await call(server.url, "GET", f"{OPENAI}/v1/models", token)
                assert status == 503 and "concurrency limit (1)" in body["error"]["message"]
                slow.close()

            async def freed() -> bool:
                return (await call(server.url, "GET", f"{OPENAI}/v1/models", token))[0] == 200
            assert await wait_for(freed, 10)
            # and a passed-through request gives its slot back: the next one is admitted
            assert (await call(server.url, "GET", f"{OPENAI}/v1/models", token))[0] == 200
        finally:
            server.stop()


# ---------------------------------------------------------------- the module's server (model rules, stored objects)

@dataclass
class Path_:
    server: ServerProcess
    fake: FakeUpstream
    alice: str
    bob: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
async def path(module_database: Database) -> AsyncIterator[Path_]:
    fake = FakeUpstream()
    await fake.start()
    server = await ServerProcess(module_database, env=bridge_env(fake)).start()
    try:
        yield Path_(server, fake, server.create_user("alice"), server.create_user("bob"))
    finally:
        server.stop()
        await fake.stop()


async def test_model_rules_apply_to_passthrough_that_names_a_model(path: Path_) -> None:
    owner = Client(path.url, path.server.admin_token)
    status, _ = await owner.request("PUT", "/api/v2/aibridge/model-rules",
                                    {"allow": [{"user": "bob", "models": ["gpt-5*", "claude-haiku-*"]}]})
    assert status == 200
    try:
        status, body, _ = await call(path.url, "GET", f"{OPENAI}/v1/models/gpt-4.1", path.bob)
        assert status == 403 and "'gpt-4.1' is not allowed" in body["error"]["message"], body
        assert (await call(path.url, "GET", f"{OPENAI}/v1/models/gpt-5-mini", path.bob))[0] == 200
        counted = {"model": "claude-sonnet-4-5-20250929", "messages": [{"role": "user", "content": "hi"}]}
        status, body, _ = await call(path.url, "POST", f"{ANTHROPIC}/v1/messages/count_tokens", path.bob, counted)
        assert status == 403 and body["error"]["type"] == "permission_error", body
        status, body, _ = await call(path.url, "POST", f"{OPENAI}/v1/responses/input_tokens", path.bob,
                                     {"model": "gpt-4.1", "input": "hi"})
        assert status == 403, body
        counted["model"] = "claude-haiku-4-5-20251001"
        assert (await call(path.url, "POST", f"{ANTHROPIC}/v1/messages/count_tokens", path.bob, counted))[0] == 200
        # alice has no rule
        assert (await call(path.url, "GET", f"{OPENAI}/v1/models/gpt-4.1", path.alice))[0] == 200
    finally:
        status, _ = await owner.request("PUT", "/api/v2/aibridge/model-rules",
                                        {"allow": [{"user": "bob", "models": None}]})
        assert status == 200


async def test_route_table_refuses_what_it_does_not_list(path: Path_) -> None:
    for method, tail in (("DELETE", "/v1/models/gpt-4.1"), ("PUT", "/v1/responses/resp_x"),
                         ("GET", "/v1/responses"), ("PATCH", "/v1/conversations/conv_x")):
        status, body, _ = await call(path.url, method, OPENAI + tail, path.alice)
        assert status == 404 and "route not supported" in body["error"]["message"], (method, tail, body)


# ---------------------------------------------------------------- 1.2 stored-object isolation

def new_response_id() -> str:
    return "resp_" + uuid.uuid4().hex + uuid.uuid4().hex[:18]


async def create_response(url: str, token: str, stream: bool = False, **extra: Any) -> tuple[int, Any]:
    rid = new_response_id()
    body = {"model": "gpt-4.1", "input": "keep this", "stream": stream, **extra}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.post(
            f"{url}{OPENAI}/v1/responses", json=body,
            headers={"Authorization": f"Bearer {token}", RESPONSE_ID_HEADER: rid}) as resp:
        raw = await resp.read()
        if resp.status != 200 or not stream:
            return resp.status, orjson.loads(raw)
        assert rid.encode() in raw
        return resp.status, {"id": rid}


def not_found(body: Any, oid: str) -> bool:
    return isinstance(body, dict) and body.get("error", {}).get("message") in (
        f"No response found with id '{oid}'.", f"Conversation with id '{oid}' not found.")


@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "streaming"])
async def test_responses_belong_to_their_creator(path: Path_, stream: bool) -> None:
    status, made = await create_response(path.url, path.alice, stream)
    assert status == 200, made
    rid = made["id"]
    # at once, before anything else: the owner row must already count
    status, body, _ = await call(path.url, "GET", f"{OPENAI}/v1/responses/{rid}", path.bob)
    assert status == 404 and not_found(body, rid), body
    assert set(body["error"]) == {"message", "type", "param", "code"}          # OpenAI's error shape
    for method, tail in (("DELETE", ""), ("POST", "/cancel"), ("GET", "/input_items")):
        status, body, _ = await call(path.url, method, f"{OPENAI}/v1/responses/{rid}{tail}", path.bob)
        assert status == 404 and not_found(body, rid), (method, tail, body)
    status, body = await create_response(path.url, path.bob, previous_response_id=rid)
    assert status == 404 and not_found(body, rid), body
    # the creator still can
    status, body, _ = await call(path.url, "GET", f"{OPENAI}/v1/responses/{rid}", path.alice)
    assert status == 200 and body["id"] == rid
    assert (await create_response(path.url, path.alice, previous_response_id=rid))[0] == 200


async def test_conversations_belong_to_their_creator(path: Path_) -> None:
    status, made, _ = await call(path.url, "POST", f"{OPENAI}/v1/conversations", path.alice, {})
    assert status == 200 and made["id"].startswith("conv_"), made
    cid = made["id"]
    for method, tail in (("GET", ""), ("POST", ""), ("DELETE", ""), ("GET", "/items"), ("POST", "/items")):
        status, body, _ = await call(path.url, method, f"{OPENAI}/v1/conversations/{cid}{tail}", path.bob,
                                     {} if method == "POST" else None)
        assert status == 404 and not_found(body, cid), (method, tail, body)
    for conversation in (cid, {"id": cid}):
        status, body = await create_response(path.url, path.bob, conversation=conversation)
        assert status == 404 and not_found(body, cid), body
    assert (await call(path.url, "GET", f"{OPENAI}/v1/conversations/{cid}", path.alice))[0] == 200
    assert (await create_response(path.url, path.alice, conversation=cid))[0] == 200


async def test_ids_never_seen_pass_through(path: Path_) -> None:
    status, body, _ = await call(path.url, "GET", f"{OPENAI}/v1/responses/resp_madeelsewhere", path.bob)
    assert status == 200 and body["id"] == "resp_madeelsewhere"


async def test_isolation_across_workers(database: Database) -> None:
    async with FakeUpstream() as fake:
        server = await ServerProcess(database, env={**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": "2"}).start()
        try:
            alice, bob = server.create_user("alice"), server.create_user("bob")
            for _ in range(6):                  # new connections: the kernel spreads them over both workers
                status, made = await create_response(server.url, alice)
                assert status == 200, made
                status, body, _ = await call(server.url, "GET", f"{OPENAI}/v1/responses/{made['id']}", bob)
                assert status == 404 and not_found(body, made["id"]), body
        finally:
            server.stop()


# ---------------------------------------------------------------- 2.9 names and path parameters

@pytest.mark.parametrize("model", ["meta/llama-3", "../gpt-4.1", "gpt..4", "gpt 4", "gpt-4\t", "gpt\x01x"])
async def test_bad_model_names_are_refused_before_any_rule(path: Path_, model: str) -> None:
    status, body, _ = await call(path.url, "POST", f"{OPENAI}/v1/chat/completions", path.alice,
                                 {"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and "model name" in body["error"]["message"], body
    status, body, _ = await call(path.url, "POST", f"{ANTHROPIC}/v1/messages/count_tokens", path.alice,
                                 {"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and body["error"]["type"] == "invalid_request_error", body


@pytest.mark.parametrize("model", ["global.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5@20250929",
                                   "ft:gpt-4.1:acme:custom:abc123"])
async def test_real_model_ids_are_accepted(path: Path_, model: str) -> None:
    status, body, _ = await call(path.url, "POST", f"{ANTHROPIC}/v1/messages/count_tokens", path.alice,
                                 {"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200, body


@pytest.mark.parametrize("tail", ["/v1/models/..;", "/v1/models/..;/x", "/v1/responses/..;/cancel",
                                  "/v1/conversations/a..b/items", "/v1/models/x;y"])
async def test_path_parameters_with_dots_or_semicolons_are_not_routes(path: Path_, tail: str) -> None:
    method = "POST" if tail.endswith("cancel") else "GET"
    status, body, _ = await call(path.url, method, OPENAI + tail, path.alice)
    assert status == 404 and "route not supported" in body["error"]["message"], body
