"""Provider key pools through a real server: with two OpenAI keys, one answering 429, every
request succeeds; when every key is limited the client gets 429 with Retry-After, when every key
is refused 502, both in the provider's error shape; cooldowns are counted per key hint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import anthropic
import openai
import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDict

from aibridge.bridge.providers.keypool import key_hint
from tests.harness import Database, ServerProcess, free_port

TIMEOUT = aiohttp.ClientTimeout(total=30)
LIMITED = {"sk-limited-1", "sk-limited-2", "sk-ant-limited"}    # answer 429 (Retry-After: 30)
REFUSED = {"sk-refused-1", "sk-refused-2"}                       # answer 401
CHAT = {"id": "chatcmpl-pool1", "object": "chat.completion", "created": 1764600000, "model": "gpt-4.1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "pooled"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
MESSAGE = {"id": "msg_pool1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
           "content": [{"type": "text", "text": "pooled"}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": {"input_tokens": 5, "output_tokens": 1}}
CHAT_STREAM = (b'data: {"id":"chatcmpl-pool2","object":"chat.completion.chunk","created":1764600000,"model":"gpt-4.1",'
               b'"choices":[{"index":0,"delta":{"role":"assistant","content":"pooled"},"finish_reason":null}]}\n\n'
               b'data: {"id":"chatcmpl-pool2","object":"chat.completion.chunk","created":1764600000,"model":"gpt-4.1",'
               b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,'
               b'"completion_tokens":1,"total_tokens":6}}\n\ndata: [DONE]\n\n')


@dataclass
class KeyedUpstream:
    """OpenAI and Anthropic stand-ins whose answer depends on the key: 429, 401 or a reply."""

    keys_seen: list[str] = field(default_factory=list)
    url: str = ""
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/messages", self.messages)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def refusal(self, key: str, anthropic_shape: bool) -> web.Response | None:
        self.keys_seen.append(key)
        if key in LIMITED:
            body = ({"type": "error", "error": {"type": "rate_limit_error", "message": "rate limited"}}
                    if anthropic_shape else {"error": {"message": "Rate limit reached", "type": "requests",
                                                       "param": None, "code": "rate_limit_exceeded"}})
            return web.json_response(body, status=429, headers={"retry-after": "30"})
        if key in REFUSED:
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": None,
                     "code": "invalid_api_key"}
            return web.json_response({"error": error}, status=401)
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        refused = self.refusal(request.headers["Authorization"].removeprefix("Bearer "), False)
        if refused is not None:
            return refused
        if (await request.json()).get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(CHAT_STREAM)
            await response.write_eof()
            return response
        return web.json_response(CHAT)

    async def messages(self, request: web.Request) -> web.Response:
        refused = self.refusal(request.headers["x-api-key"], True)
        return refused if refused is not None else web.json_response(MESSAGE)


@pytest.fixture(scope="module")
async def upstream(module_database: Database) -> AsyncIterator[KeyedUpstream]:
    keyed = KeyedUpstream()
    await keyed.start()
    yield keyed
    await keyed.stop()


async def start(db: Database, upstream: KeyedUpstream, openai_keys: str, anthropic_keys: str = "sk-ant-good",
                metrics_port: int = 0) -> ServerProcess:
    env = {"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_OPENAI_KEY": openai_keys,
           "CODER_AIBRIDGE_OPENAI_BASE_URL": f"{upstream.url}/v1/", "CODER_AIBRIDGE_ANTHROPIC_KEY": anthropic_keys,
           "CODER_AIBRIDGE_ANTHROPIC_BASE_URL": f"{upstream.url}/", "CODER_AIBRIDGE_SHUTDOWN_GRACE": "5s"}
    if metrics_port:
        env |= {"CODER_PROMETHEUS_ENABLE": "true", "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{metrics_port}"}
    return await ServerProcess(db, env=env).start()


async def test_two_keys_one_limited_every_request_succeeds(module_database: Database,
                                                           upstream: KeyedUpstream) -> None:
    metrics_port = free_port()
    server = await start(module_database, upstream, "sk-limited-1, sk-good", "sk-ant-limited,sk-ant-good",
                         metrics_port)
    try:
        token = server.create_user("alice")
        client = openai.AsyncOpenAI(base_url=f"{server.url}/api/v2/aibridge/openai/v1", api_key=token, max_retries=0)
        upstream.keys_seen.clear()
        for i in range(6):
            answer = await client.chat.completions.create(
                model="gpt-4.1", messages=[{"role": "user", "content": f"q{i}"}], stream=False)
            assert answer.choices[0].message.content == "pooled"
        stream = await client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "s"}],
                                                      stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "pooled"
        # the limited key was tried once, then left alone for its Retry-After
        assert upstream.keys_seen.count("sk-limited-1") == 1 and upstream.keys_seen.count("sk-good") == 7
        claude = anthropic.AsyncAnthropic(base_url=f"{server.url}/api/v2/aibridge/anthropic", api_key=token,
                                          max_retries=0)
        for _ in range(2):
            message = await claude.messages.create(model="claude-haiku-4-5", max_tokens=10,
                                                   messages=[{"role": "user", "content": "hi"}])
            assert message.content[0].text == "pooled"      # type: ignore[union-attr]
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, \
                session.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
            metrics = await resp.text()
        assert (f'coder_aibridged_provider_key_cooldowns_total{{key_hint="{key_hint("sk-limited-1")}",'
                f'provider="openai"}} 1.0') in metrics
        assert f'key_hint="{key_hint("sk-ant-limited")}",provider="anthropic"' in metrics
        assert "sk-limited-1" not in metrics and "sk-limited-1" not in server.output()
    finally:
        server.stop()


async def post_chat(server: ServerProcess, token: str) -> tuple[int, CIMultiDict[str], dict[str, object]]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.post(
            f"{server.url}/api/v2/aibridge/openai/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
            json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}) as resp:
        return resp.status, CIMultiDict(resp.headers), orjson.loads(await resp.read())


async def test_every_key_limited_gives_429_with_retry_after(module_database: Database,
                                                            upstream: KeyedUpstream) -> None:
    server = await start(module_database, upstream, "sk-limited-1,sk-limited-2")
    try:
        token = server.create_user("bob")
        upstream.keys_seen.clear()
        for _ in range(2):
            status, headers, body = await post_chat(server, token)
            assert status == 429, body
            assert 1 <= int(headers["Retry-After"]) <= 30
            assert body["error"]["message"].startswith("every API key of provider openai is rate limited")  # type: ignore[index]
            assert body["error"]["type"]                     # type: ignore[index]
        # the second request found every key cooling and did not call the upstream at all
        assert sorted(upstream.keys_seen) == ["sk-limited-1", "sk-limited-2"]
    finally:
        server.stop()


async def test_every_key_refused_gives_502(module_database: Database, upstream: KeyedUpstream) -> None:
    server = await start(module_database, upstream, "sk-refused-1,sk-refused-2")
    try:
        status, _, body = await post_chat(server, server.create_user("carol"))
        assert status == 502, body
        assert "every API key of provider openai was refused" in body["error"]["message"]  # type: ignore[index]
    finally:
        server.stop()


async def test_one_key_relays_the_upstream_answer_as_before(module_database: Database,
                                                            upstream: KeyedUpstream) -> None:
    server = await start(module_database, upstream, "sk-limited-1")
    try:
        token = server.create_user("dave")
        for _ in range(2):
            status, headers, body = await post_chat(server, token)
            assert status == 429 and headers["retry-after"] == "30"
            assert body["error"]["code"] == "rate_limit_exceeded"   # type: ignore[index]
    finally:
        server.stop()
