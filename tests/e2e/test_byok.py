"""Bring your own key (issue 23 §1) through a real server: with ``X-Coder-AI-Governance-Token`` the
upstream sees the user's own credential and never the central key or the bridge token, for the
three APIs, blocking and streaming, intercepted and passed through; each interception records
``credential_kind`` / ``credential_hint`` (export and structured logs); the switch, the missing
credential and Bedrock are refused in the provider's shape; budgets and model rules apply; an
upstream error echoing the user's key is scrubbed from what is relayed, recorded and logged."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from aiohttp import web

from tests.e2e.conftest import ask, bridge_env
from tests.e2e.records import ids, latest
from tests.e2e.test_proxy import basic, connect, proxy_env, tls_inside, trusting, wait_listening
from tests.fakes.upstream import FakeUpstream, ReceivedRequest
from tests.harness import Client, Database, ServerProcess, free_port, wait_for

GOV = "X-Coder-AI-Governance-Token"
CENTRAL = ("sk-openai-central", "sk-ant-central")       # what bridge_env configures
USER_OPENAI = "sk-proj-UserOwnOpenAIKey0000000000a1b2"
USER_ANTHROPIC = "sk-ant-api03-UserOwnAnthropicKey00000c3d4"
OPENAI_MODEL, ANTHROPIC_MODEL = "gpt-4.1", "claude-sonnet-4-5"
CONFIG = """
aibridge:
  prices:
    claude-dear-*: {input: 100000, output: 100000}
  model_rules:
    allow:
      - {role: member, models: ["gpt-*", "claude-*"]}
"""


@dataclass
class Env:
    server: ServerProcess
    fake: FakeUpstream
    token: str
    username: str

    def openai(self, key: str = USER_OPENAI, token: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.server.url}/api/v2/aibridge/openai/v1", api_key=key,
                                  default_headers={GOV: token or self.token}, max_retries=0, timeout=30)

    def anthropic(self, key: str = USER_ANTHROPIC, token: str | None = None) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=f"{self.server.url}/api/v2/aibridge/anthropic", api_key=key,
                                        default_headers={GOV: token or self.token}, max_retries=0, timeout=30)

    def member(self) -> Client:
        return Client(self.server.url, self.token)


@pytest.fixture(scope="module")
async def env(module_database: Database) -> AsyncIterator[Env]:
    # The upstream takes only the users' own keys: a central key sent by mistake is refused (401).
    fake = FakeUpstream(openai_key=USER_OPENAI, anthropic_key=USER_ANTHROPIC)
    await fake.start()
    config = module_database.data_dir / "byok.yaml"
    config.write_text(CONFIG)
    server = await ServerProcess(module_database, env={
        **bridge_env(fake), "CODER_CONFIG_PATH": str(config), "CODER_AIBRIDGE_STRUCTURED_LOGGING": "true",
        "CODER_LOGGING_JSON": "true",
        # A Bedrock provider: BYOK cannot apply to it (refused before any call, so no upstream is needed).
        "CODER_AIBRIDGE_PROVIDER_0_TYPE": "anthropic", "CODER_AIBRIDGE_PROVIDER_0_NAME": "bedrock",
        "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_REGION": "us-east-1",
        "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY": "AKIDBYOKTEST",
        "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY_SECRET": "byok/test/SECRET+KEY/wJalrXUtnFEMIK7MDENG",
    }).start()
    username = f"byok{uuid.uuid4().hex[:6]}"
    try:
        yield Env(server, fake, server.create_user(username), username)
    finally:
        server.stop()
        await fake.stop()


def assert_only_own_credential(seen: ReceivedRequest, token: str, credential: tuple[str, str]) -> None:
    """The upstream saw the user's header as sent, and neither the bridge token nor a central key."""
    name, value = credential
    assert seen.headers.get(name) == value, seen.header_pairs
    assert GOV.lower() not in {k.lower() for k in seen.headers}
    everything = repr(seen.header_pairs) + seen.body.decode(errors="replace")
    assert token not in everything
    assert not any(key in repr(seen.header_pairs) for key in CENTRAL)


async def call(env: Env, api: str, stream: bool, **overrides: Any) -> None:
    """One request of ``api`` with the user's own key, through the SDK, streamed or not."""
    if api == "messages":
        await ask(env.anthropic(**overrides), stream, model=ANTHROPIC_MODEL, max_tokens=64,
                  messages=[{"role": "user", "content": "hello"}])
        return
    client = env.openai(**overrides)
    if api == "chat":
        chat = await client.chat.completions.create(model=OPENAI_MODEL, stream=stream,
                                                    messages=[{"role": "user", "content": "hello"}])
        if stream:
            async for _ in chat:         # type: ignore[union-attr]
                pass
        return
    answer = await client.responses.create(model=OPENAI_MODEL, input="hello", stream=stream)
    if stream:
        async for _ in answer:          # type: ignore[union-attr]
            pass


CASES = [("chat", "/v1/chat/completions", ("Authorization", f"Bearer {USER_OPENAI}"), "sk-proj-…a1b2"),
         ("responses", "/v1/responses", ("Authorization", f"Bearer {USER_OPENAI}"), "sk-proj-…a1b2"),
         # this Anthropic SDK sends its api_key as a bearer; Claude Code sends X-Api-Key (test_real_clients)
         ("messages", "/v1/messages", ("Authorization", f"Bearer {USER_ANTHROPIC}"), "sk-ant-…c3d4")]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("api", "path", "credential", "hint"), CASES)
async def test_upstream_sees_only_the_users_own_credential(env: Env, api: str, path: str,
                                                           credential: tuple[str, str], hint: str,
                                                           stream: bool) -> None:
    before = await ids(env.member())
    env.fake.clear()
    await call(env, api, stream)
    [seen] = env.fake.requests_to(path)
    assert_only_own_credential(seen, env.token, credential)
    found = await latest(env.member(), "initiator:me", before)
    assert (found["credential_kind"], found["credential_hint"]) == ("byok", hint)
    assert found["token_usages"], found          # recorded (and priced) like any other
    assert credential[1].split()[-1] not in orjson.dumps(found).decode()


async def test_oauth_bearer_is_forwarded_as_sent(env: Env) -> None:
    """Claude Pro/Max: an OAuth token sent as ``Authorization: Bearer`` (ANTHROPIC_AUTH_TOKEN)."""
    oauth = "sk-ant-oat01-SubscriptionTokenOfTheUser00e5f6"
    env.fake.anthropic_key = oauth
    try:
        before = await ids(env.member())
        env.fake.clear()
        client = anthropic.AsyncAnthropic(base_url=f"{env.server.url}/api/v2/aibridge/anthropic",
                                          auth_token=oauth, default_headers={GOV: env.token}, max_retries=0)
        await ask(client, True, model="claude-haiku-4-5", max_tokens=64,
                  messages=[{"role": "user", "content": "hi"}])
        [seen] = env.fake.requests_to("/v1/messages")
        assert_only_own_credential(seen, env.token, ("Authorization", f"Bearer {oauth}"))
        assert "x-api-key" not in seen.headers
        found = await latest(env.member(), "initiator:me", before)
        assert (found["credential_kind"], found["credential_hint"]) == ("byok", "sk-ant-…e5f6")
    finally:
        env.fake.anthropic_key = USER_ANTHROPIC


async def test_without_the_header_nothing_changes(env: Env) -> None:
    before = await ids(env.member())
    env.fake.clear()
    client = anthropic.AsyncAnthropic(base_url=f"{env.server.url}/api/v2/aibridge/anthropic",
                                      api_key=env.token, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):       # the central key went upstream: this fake refuses it
        await client.messages.create(model="claude-opus-4-1", max_tokens=8,
                                     messages=[{"role": "user", "content": "hi"}])
    [seen] = env.fake.requests_to("/v1/messages")
    assert seen.headers["x-api-key"] == "sk-ant-central"
    found = await latest(env.member(), "initiator:me", before)
    assert (found["credential_kind"], found["credential_hint"]) == ("centralized", "")


async def test_passthrough_route_with_byok(env: Env) -> None:
    env.fake.clear()
    models = await env.openai().models.list()
    assert models.data
    [seen] = env.fake.requests_to("/v1/models")
    assert_only_own_credential(seen, env.token, ("Authorization", f"Bearer {USER_OPENAI}"))
    status, count = await raw(env, "/api/v2/aibridge/anthropic/v1/messages/count_tokens",
                              {GOV: env.token, "X-Api-Key": USER_ANTHROPIC, "anthropic-version": "2023-06-01"},
                              {"model": ANTHROPIC_MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and count["input_tokens"] > 0
    [seen] = env.fake.requests_to("/v1/messages/count_tokens")
    assert_only_own_credential(seen, env.token, ("X-Api-Key", USER_ANTHROPIC))


async def raw(env: Env, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    return await Client(env.server.url, "").request("POST", path, body, headers=headers)


async def test_byok_refusals_in_the_providers_shape(env: Env) -> None:
    env.fake.clear()
    message = {"model": ANTHROPIC_MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    # no credential of its own
    status, body = await raw(env, "/api/v2/aibridge/anthropic/v1/messages", {GOV: env.token}, message)
    assert status == 401 and body["type"] == "error" and "own provider credential" in body["error"]["message"]
    # a wrong bridge token in the header
    status, body = await raw(env, "/api/v2/aibridge/openai/v1/chat/completions",
                             {GOV: "nope", "Authorization": f"Bearer {USER_OPENAI}"},
                             {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 403 and body["error"]["message"] == "invalid API token"
    # Bedrock signs with its own AWS credentials: 400 in Anthropic's shape, nothing sent
    status, body = await raw(env, "/api/v2/aibridge/bedrock/v1/messages",
                             {GOV: env.token, "X-Api-Key": USER_ANTHROPIC}, message)
    assert status == 400 and body["type"] == "error" and "Bedrock" in body["error"]["message"]
    assert not env.fake.requests


async def test_model_rules_apply_to_byok(env: Env) -> None:
    env.fake.clear()
    with pytest.raises(openai.PermissionDeniedError):
        await env.openai().chat.completions.create(model="o3-forbidden",
                                                   messages=[{"role": "user", "content": "hi"}])
    assert not env.fake.requests


async def test_structured_logs_show_the_kind_and_never_the_key(env: Env) -> None:
    before = await ids(env.member())
    await call(env, "messages", False)
    await latest(env.member(), "initiator:me", before)
    lines = [orjson.loads(line) for line in env.server.output().splitlines() if '"interception_start"' in line]
    assert any(doc.get("credential_kind") == "byok" and doc.get("credential_hint") == "sk-ant-…c3d4"
               for doc in lines)
    assert USER_ANTHROPIC not in env.server.output() and USER_OPENAI not in env.server.output()


@pytest.mark.parametrize("include", [True, False])
async def test_budgets_count_byok_unless_excluded(env: Env, include: bool) -> None:
    """One dear BYOK request (the first always fits) spends the budget, and the next is refused;
    with ``--aibridge-budget-include-byok=false`` it spends nothing and the next goes through."""
    owner = Client(env.server.url, env.server.admin_token)
    name = f"bud{uuid.uuid4().hex[:6]}"
    token = env.server.create_user(name)
    assert (await owner.request("PUT", f"/api/v2/aibridge/budgets/user:{name}",
                                {"period": "day", "limit_usd": 0.01}))[0] == 200
    server = env.server if include else await ServerProcess(env.server.db, env={
        **{k: v for k, v in env.server.env.items() if k != "CODER_HTTP_ADDRESS"},
        "CODER_AIBRIDGE_BUDGET_INCLUDE_BYOK": "false"}).start()
    try:
        client = anthropic.AsyncAnthropic(base_url=f"{server.url}/api/v2/aibridge/anthropic",
                                          api_key=USER_ANTHROPIC, default_headers={GOV: token}, max_retries=0)

        async def dear() -> Any:
            return await client.messages.create(model="claude-dear-1", max_tokens=16,
                                                messages=[{"role": "user", "content": "hi"}])
        await dear()
        found = await latest(Client(server.url, token), "initiator:me")
        assert found["credential_kind"] == "byok" and found["cost_usd"] > 0.01      # priced either way
        member = Client(server.url, token)

        async def spent() -> float | None:
            budget = (await member.get("/api/v2/users/me"))[1]["budget"]
            return float(budget["spent_usd"]) if budget["spent_usd"] > 0 else None
        if include:
            assert await wait_for(spent) == pytest.approx(found["cost_usd"])
            with pytest.raises(anthropic.PermissionDeniedError, match="budget"):
                await dear()
        else:
            await dear()
            assert await spent() is None
    finally:
        if server is not env.server:
            server.stop()


async def test_allow_byok_off_refuses_with_403(module_database: Database) -> None:
    fake = FakeUpstream(openai_key=USER_OPENAI, anthropic_key=USER_ANTHROPIC)
    await fake.start()
    server = await ServerProcess(module_database, env={**bridge_env(fake),
                                                       "CODER_AI_GATEWAY_ALLOW_BYOK": "false"}).start()
    try:
        token = server.create_user(f"off{uuid.uuid4().hex[:6]}")
        env = Env(server, fake, token, "")
        with pytest.raises(anthropic.PermissionDeniedError, match="disabled") as refused:
            await call(env, "messages", False)
        assert refused.value.body["type"] == "error"      # type: ignore[index]
        with pytest.raises(openai.PermissionDeniedError, match="disabled"):
            await call(env, "chat", True)
        assert not fake.requests
    finally:
        server.stop()
        await fake.stop()


async def test_an_upstream_echoing_the_users_key_is_scrubbed(module_database: Database) -> None:
    """A gateway that quotes the key it got in its error: the client, the record and the log get
    ``[REDACTED:credential]`` instead (the answer goes back to the key's owner, but a proxy or a
    log on the way should not learn it either)."""
    async def refuse(request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.json_response({"error": {"message": f"Incorrect API key provided: {key}", "type":
                                            "invalid_request_error", "param": None, "code": "invalid_api_key"}},
                                 status=401)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server = await ServerProcess(module_database, env={
        "CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_OPENAI_KEY": "sk-openai-central",
        "CODER_AIBRIDGE_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1/", "CODER_LOGGING_JSON": "true",
        "CODER_AIBRIDGE_STRUCTURED_LOGGING": "true"}).start()
    try:
        token = server.create_user(f"echo{uuid.uuid4().hex[:6]}")
        async with aiohttp.ClientSession() as session, session.post(
                f"{server.url}/api/v2/aibridge/openai/v1/chat/completions",
                json={"model": "gpt-4.1-echo", "messages": [{"role": "user", "content": "hi"}]},
                headers={GOV: token, "Authorization": f"Bearer {USER_OPENAI}"}) as resp:
            assert resp.status == 401
            relayed = await resp.text()
        assert USER_OPENAI not in relayed and "[REDACTED:credential]" in relayed
        found = await latest(Client(server.url, token), "initiator:me")
        assert found["credential_kind"] == "byok" and found["metadata"]["outcome"] == "error"
        assert USER_OPENAI not in orjson.dumps(found).decode()
        assert USER_OPENAI not in server.output()
    finally:
        server.stop()
        await runner.cleanup()


async def proxied_request(port: int, ca: Path, proxy_token: str, headers: dict[str, str]) -> bytes:
    """One blocking Messages call to api.anthropic.com through the AI Bridge Proxy's decrypted tunnel."""
    status, _, reader, writer = await connect(("127.0.0.1", port), "api.anthropic.com:443", basic(proxy_token))
    assert status == 200
    await tls_inside(reader, writer, trusting(ca), "api.anthropic.com")
    body = orjson.dumps({"model": ANTHROPIC_MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
    head = "".join(f"{k}: {v}\r\n" for k, v in {
        "Host": "api.anthropic.com", "Content-Type": "application/json", "anthropic-version": "2023-06-01",
        "Content-Length": str(len(body)), "Connection": "close", **headers}.items())
    writer.write(f"POST /v1/messages HTTP/1.1\r\n{head}\r\n".encode() + body)
    reply = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return reply


async def test_byok_through_the_proxy(module_database: Database) -> None:
    """The proxy authenticates the CONNECT; a tunnelled request with the governance header of the
    same user goes upstream with the user's own key; another user's governance token is refused."""
    fake = FakeUpstream(openai_key=USER_OPENAI, anthropic_key=USER_ANTHROPIC)
    await fake.start()
    port = free_port()
    server = await ServerProcess(module_database, env=proxy_env(fake, port)).start()
    try:
        await wait_listening(port)
        ca = module_database.data_dir / "proxy" / "ca.pem"
        token = server.create_user(f"px{uuid.uuid4().hex[:6]}")
        other = server.create_user(f"px{uuid.uuid4().hex[:6]}")
        before = await ids(Client(server.url, token))
        reply = await proxied_request(port, ca, token, {GOV: token, "X-Api-Key": USER_ANTHROPIC})
        assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
        [seen] = fake.requests_to("/v1/messages")
        assert_only_own_credential(seen, token, ("X-Api-Key", USER_ANTHROPIC))
        found = await latest(Client(server.url, token), "initiator:me", before)
        assert found["credential_kind"] == "byok" and found["metadata"]["door"] == "proxy"
        reply = await proxied_request(port, ca, token, {GOV: other, "X-Api-Key": USER_ANTHROPIC})
        assert reply.startswith(b"HTTP/1.1 403") and b"another user" in reply, reply[:300]
        assert len(fake.requests_to("/v1/messages")) == 1
    finally:
        server.stop()
        await fake.stop()
