"""Several providers of one type (``CODER_AIBRIDGE_PROVIDER_<N>_*``) end to end: each routed at
``/api/v2/aibridge/<NAME>/…`` to its own upstream with its own credential, each recorded with its own
``provider_name``; bad provider configurations stop a real server process with one line naming the variables."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import anthropic
import openai
import orjson
import pytest
import yaml

from tests.e2e.conftest import ask
from tests.e2e.records import expected_totals, ids, latest, totals
from tests.fakes.bedrock import SCENARIOS, FakeBedrock
from tests.fakes.upstream import FakeUpstream, expected_usage
from tests.harness import Client, Database, ServerProcess, free_port, run_cli, wait_for

STREAM = [False, True]
REGION = "eu-central-1"
ACCESS_KEY = "AKIDPROVIDERSE2E"
SECRET_KEY = "providers/e2e/SECRET+KEY/wJalrXUtnFEMIK7MDENGbPxRfiCY"
BEDROCK_MODEL = "eu.anthropic.claude-opus-4-5-20251101-v1:0"        # this provider's own main model
SMALL_MODEL = "global.anthropic.claude-haiku-4-5-20251001-v1:0"     # the default small fast model
LITELLM_KEY = "sk-litellm-gateway"
SECOND_ANTHROPIC_KEY = "sk-ant-team-b"

TYPES = ("CODER_AIBRIDGE_PROVIDER_0_TYPE: must be one of openai, anthropic, openai-compat, azure, google, "
         "openrouter, vercel, copilot, ")


@dataclass
class Providers:
    server: ServerProcess
    upstream: FakeUpstream         # legacy `anthropic` (Anthropic direct, key sk-ant-central)
    gateway: FakeUpstream          # `litellm` (OpenAI type) and `team-b` (Anthropic type), other keys
    bedrock: FakeBedrock           # `anthropic-bedrock`
    token: str

    def route(self, name: str) -> str:
        return f"{self.server.url}/api/v2/aibridge/{name}"

    def anthropic(self, name: str) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.route(name), api_key=self.token, max_retries=0, timeout=30)

    def openai(self, name: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.route(name)}/v1", api_key=self.token, max_retries=0, timeout=30)

    def owner(self) -> Client:
        return Client(self.server.url, self.server.admin_token)

    def counts(self) -> tuple[int, int, int]:
        return len(self.upstream.requests), len(self.gateway.requests), len(self.bedrock.requests)


def providers_env(upstream: FakeUpstream, gateway: FakeUpstream, bedrock: FakeBedrock) -> dict[str, str]:
    return {
        "CODER_AIBRIDGE_ENABLED": "true",
        "CODER_AIBRIDGE_SHUTDOWN_GRACE": "5s",
        # legacy single-provider options: `anthropic`
        "CODER_AIBRIDGE_ANTHROPIC_KEY": upstream.anthropic_key,
        "CODER_AIBRIDGE_ANTHROPIC_BASE_URL": upstream.anthropic_base_url,
        # indexed providers
        "CODER_AIBRIDGE_PROVIDER_0_TYPE": "anthropic",
        "CODER_AIBRIDGE_PROVIDER_0_NAME": "anthropic-bedrock",
        "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_BASE_URL": bedrock.url,
        "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_REGION": REGION,
        "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY": ACCESS_KEY,
        "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY_SECRET": SECRET_KEY,
        "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_MODEL": BEDROCK_MODEL,
        "CODER_AIBRIDGE_PROVIDER_1_TYPE": "openai",
        "CODER_AIBRIDGE_PROVIDER_1_NAME": "litellm",
        "CODER_AIBRIDGE_PROVIDER_1_KEY": LITELLM_KEY,
        "CODER_AIBRIDGE_PROVIDER_1_BASE_URL": gateway.openai_base_url,
        "CODER_AIBRIDGE_PROVIDER_2_TYPE": "anthropic",
        "CODER_AIBRIDGE_PROVIDER_2_NAME": "team-b",
        "CODER_AIBRIDGE_PROVIDER_2_KEY": SECOND_ANTHROPIC_KEY,
        "CODER_AIBRIDGE_PROVIDER_2_BASE_URL": gateway.anthropic_base_url,
    }


@pytest.fixture(scope="module")
async def providers(module_database: Database) -> AsyncIterator[Providers]:
    upstream = FakeUpstream()
    gateway = FakeUpstream(openai_key=LITELLM_KEY, anthropic_key=SECOND_ANTHROPIC_KEY)
    bedrock = FakeBedrock(ACCESS_KEY, SECRET_KEY, REGION)
    await upstream.start()
    await gateway.start()
    await bedrock.start()
    try:
        server = await ServerProcess(module_database, env=providers_env(upstream, gateway, bedrock)).start()
        try:
            yield Providers(server, upstream, gateway, bedrock, server.create_user("alice"))
        finally:
            server.stop()
        assert "Traceback" not in server.output(), server.output()[-3000:]
    finally:
        await bedrock.stop()
        await gateway.stop()
        await upstream.stop()


def check_token_not_forwarded(headers: Any, token: str) -> None:
    for name, value in headers.items():
        assert token not in value, name


# ---------------------------------------------------------------- each route, its upstream, its record

@pytest.mark.parametrize("stream", STREAM)
async def test_legacy_anthropic_provider(providers: Providers, stream: bool) -> None:
    owner = providers.owner()
    seen = await ids(owner)
    up, gw, br = providers.counts()
    model = "claude-sonnet-4-6-scenario-tool"
    prompt = f"direct ({stream})"
    message = await ask(providers.anthropic("anthropic"), stream, model=model, max_tokens=1024,
                        messages=[{"role": "user", "content": prompt}])
    assert providers.counts() == (up + 1, gw, br)
    sent = providers.upstream.requests[-1]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == "sk-ant-central"
    check_token_not_forwarded(sent.headers, providers.token)
    record = await latest(owner, after=seen)
    assert (record["provider"], record["provider_name"], record["model"]) == ("anthropic", "anthropic", model)
    assert "requested_model" not in record["metadata"]
    assert [p["prompt"] for p in record["user_prompts"]] == [prompt]
    assert totals(record) == expected_totals(expected_usage("messages", "tool", streaming=stream))
    assert [(t["tool"], t["provider_tool_call_id"]) for t in record["tool_usages"]] == [
        (b.name, b.id) for b in message.content if b.type == "tool_use"]


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize(("requested", "model"), [("claude-opus-4-7", BEDROCK_MODEL),
                                                  ("claude-haiku-4-5", SMALL_MODEL)])
async def test_bedrock_provider(providers: Providers, requested: str, model: str, stream: bool) -> None:
    owner = providers.owner()
    seen = await ids(owner)
    up, gw, br = providers.counts()
    prompt = f"scenario:tool_use via bedrock ({requested}, {stream})"
    message = await ask(providers.anthropic("anthropic-bedrock"), stream, model=requested, max_tokens=1024,
                        messages=[{"role": "user", "content": prompt}])
    assert providers.counts() == (up, gw, br + 1)
    sent = providers.bedrock.requests[-1]
    assert sent.auth_error is None, sent.auth_error                  # signed with this provider's key
    assert f"Credential={ACCESS_KEY}/" in sent.headers["authorization"]
    assert f"/{REGION}/bedrock/aws4_request" in sent.headers["authorization"]
    operation = "invoke-with-response-stream" if stream else "invoke"
    assert sent.raw_path == f"/model/{quote(model, safe='')}/{operation}"
    check_token_not_forwarded(sent.headers, providers.token)
    record = await latest(owner, after=seen)
    assert (record["provider"], record["provider_name"], record["model"]) == (
        "anthropic", "anthropic-bedrock", model)
    assert record["metadata"]["requested_model"] == requested
    assert [p["prompt"] for p in record["user_prompts"]] == [prompt]
    assert totals(record) == expected_totals(dataclasses.asdict(SCENARIOS["tool_use"].usage))
    assert [(t["tool"], t["provider_tool_call_id"]) for t in record["tool_usages"]] == [
        (b.name, b.id) for b in message.content if b.type == "tool_use"]


@pytest.mark.parametrize("stream", STREAM)
async def test_second_anthropic_provider(providers: Providers, stream: bool) -> None:
    owner = providers.owner()
    seen = await ids(owner)
    up, gw, br = providers.counts()
    model = "claude-sonnet-4-6-scenario-simple"
    await ask(providers.anthropic("team-b"), stream, model=model, max_tokens=1024,
              messages=[{"role": "user", "content": "team b"}])
    assert providers.counts() == (up, gw + 1, br)
    sent = providers.gateway.requests[-1]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == SECOND_ANTHROPIC_KEY
    record = await latest(owner, after=seen)
    assert (record["provider"], record["provider_name"], record["model"]) == ("anthropic", "team-b", model)
    assert totals(record) == expected_totals(expected_usage("messages", "simple", streaming=stream))


@pytest.mark.parametrize("stream", STREAM)
async def test_openai_typed_provider(providers: Providers, stream: bool) -> None:
    owner = providers.owner()
    seen = await ids(owner)
    up, gw, br = providers.counts()
    model = "gpt-4.1-scenario-tool"
    client = providers.openai("litellm")
    messages: Any = [{"role": "user", "content": f"litellm ({stream})"}]
    if stream:
        chunks = [c async for c in await client.chat.completions.create(model=model, messages=messages,
                                                                         stream=True)]
        assert chunks
    else:
        done = await client.chat.completions.create(model=model, messages=messages)
        assert done.choices[0].message.tool_calls
    assert providers.counts() == (up, gw + 1, br)
    sent = providers.gateway.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.headers["Authorization"] == f"Bearer {LITELLM_KEY}"
    check_token_not_forwarded(sent.headers, providers.token)
    record = await latest(owner, after=seen)
    assert (record["provider"], record["provider_name"], record["model"]) == ("openai", "litellm", model)
    assert totals(record) == expected_totals(expected_usage("chat", "tool", streaming=stream))
    assert len(record["tool_usages"]) == 1

    seen = await ids(owner)
    response = await client.responses.create(model="gpt-5-scenario-simple", input="litellm responses")
    assert response.output
    assert providers.gateway.requests[-1].path == "/v1/responses"
    record = await latest(owner, after=seen)
    assert (record["provider"], record["provider_name"]) == ("openai", "litellm")


async def test_passthrough_uses_each_providers_own_upstream(providers: Providers) -> None:
    up, gw, br = providers.counts()
    models = await providers.openai("litellm").models.list()
    assert [m.id async for m in models]
    sent = providers.gateway.requests[-1]
    assert sent.path == "/v1/models" and sent.headers["Authorization"] == f"Bearer {LITELLM_KEY}"
    page = await providers.anthropic("anthropic").models.list()
    assert page.data
    assert providers.upstream.requests[-1].headers["x-api-key"] == "sk-ant-central"
    page = await providers.anthropic("team-b").models.list()
    assert page.data
    assert providers.gateway.requests[-1].headers["x-api-key"] == SECOND_ANTHROPIC_KEY
    with pytest.raises(anthropic.NotFoundError) as info:          # Bedrock has no models route
        await providers.anthropic("anthropic-bedrock").models.list()
    assert "route not supported" in str(info.value.body)
    assert providers.counts() == (up + 1, gw + 2, br)


async def test_unconfigured_provider_names(providers: Providers) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for name in ("openai", "bedrock", "LiteLLM"):
            async with session.post(f"{providers.route(name)}/v1/chat/completions", data=b"{}",
                                    headers={"Authorization": f"Bearer {providers.token}"}) as resp:
                body = orjson.loads(await resp.read())
                assert resp.status == 404, name
                assert body["message"] == f"provider {name!r} is not configured"
                assert body["detail"] == "Configured providers: anthropic, anthropic-bedrock, litellm, team-b."


async def test_export_filters_by_provider_type_and_names_each_provider(providers: Providers) -> None:
    owner = providers.owner()
    seen = await ids(owner)
    await ask(providers.anthropic("anthropic"), False, model="claude-x", max_tokens=10,
              messages=[{"role": "user", "content": "a"}])
    await ask(providers.anthropic("anthropic-bedrock"), False, model="claude-x", max_tokens=10,
              messages=[{"role": "user", "content": "scenario:simple b"}])
    await ask(providers.anthropic("team-b"), False, model="claude-x", max_tokens=10,
              messages=[{"role": "user", "content": "c"}])
    await providers.openai("litellm").chat.completions.create(model="gpt-4.1", messages=[{"role": "user",
                                                                                          "content": "d"}])

    async def records(q: str = "") -> list[dict[str, Any]]:
        status, body = await owner.get("/api/v2/aibridge/interceptions?limit=1000&q=" + q)
        assert status == 200, body
        return [r for r in body["results"] if r["id"] not in seen]

    async def all_recorded() -> list[dict[str, Any]] | None:
        found = await records()
        return found if len(found) >= 4 else None

    fresh = await wait_for(all_recorded, timeout=10)
    assert fresh, await records()
    everything = {("anthropic", "anthropic", "claude-x"), ("anthropic", "anthropic-bedrock", BEDROCK_MODEL),
                  ("anthropic", "team-b", "claude-x"), ("openai", "litellm", "gpt-4.1")}
    assert sorted((r["provider"], r["provider_name"], r["model"]) for r in fresh) == sorted(everything)
    by_type = {q: {(r["provider"], r["provider_name"], r["model"]) for r in await records(q)}
               for q in ("provider:openai", "provider:anthropic", "provider:litellm")}
    assert by_type["provider:openai"] == {("openai", "litellm", "gpt-4.1")}
    assert by_type["provider:anthropic"] == everything - {("openai", "litellm", "gpt-4.1")}
    assert by_type["provider:litellm"] == set()              # the filter is by type (as in Coder)
    status, models = await owner.get("/api/v2/aibridge/models")
    assert status == 200 and {BEDROCK_MODEL, "claude-x", "gpt-4.1"} <= set(models)


# ---------------------------------------------------------------- start-up errors, as real processes

def provider(index: int, **fields: str) -> dict[str, str]:
    return {f"CODER_AIBRIDGE_PROVIDER_{index}_{key.upper()}": value for key, value in fields.items()}


BEDROCK_KEYS = {"bedrock_region": "us-east-1", "bedrock_access_key": "AK", "bedrock_access_key_secret": "SK"}

STARTUP_ERRORS = [
    pytest.param({**provider(0, type="openai", key="k"), **provider(2, type="openai", name="two", key="k")},
                 "CODER_AIBRIDGE_PROVIDER_1_TYPE: provider indices must be contiguous from 0; index 1 is missing",
                 id="non-contiguous"),
    pytest.param({**provider(1, type="openai", key="k")},
                 "CODER_AIBRIDGE_PROVIDER_0_TYPE: provider indices must be contiguous", id="not-from-0"),
    pytest.param({**provider(0, type="openai", name="gw", key="k"), **provider(1, type="anthropic", name="gw",
                                                                               key="k")},
                 "CODER_AIBRIDGE_PROVIDER_1_NAME: provider name 'gw' is already used by "
                 "CODER_AIBRIDGE_PROVIDER_0_NAME", id="duplicate-name"),
    pytest.param({**provider(0, type="anthropic", key="k"), **provider(1, type="anthropic", key="k2")},
                 "CODER_AIBRIDGE_PROVIDER_1_NAME: provider name 'anthropic' is already used by "
                 "CODER_AIBRIDGE_PROVIDER_0_NAME", id="duplicate-default-name"),
    pytest.param({"CODER_AIBRIDGE_ANTHROPIC_KEY": "k", **provider(0, type="anthropic", key="k2")},
                 "CODER_AIBRIDGE_PROVIDER_0_NAME: provider name 'anthropic' is already used by legacy options "
                 "(--aibridge-anthropic-key, CODER_AIBRIDGE_ANTHROPIC_KEY)", id="clash-with-legacy-anthropic"),
    pytest.param({"CODER_AIBRIDGE_OPENAI_KEY": "k", **provider(0, type="anthropic", name="openai", key="k2")},
                 "CODER_AIBRIDGE_PROVIDER_0_NAME: provider name 'openai' is already used by legacy options "
                 "(--aibridge-openai-key, CODER_AIBRIDGE_OPENAI_KEY)", id="clash-with-legacy-openai"),
    pytest.param({"CODER_AIBRIDGE_BEDROCK_REGION": "us-east-1", "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY": "AK",
                  "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY_SECRET": "SK", **provider(0, type="anthropic", key="k")},
                 "CODER_AIBRIDGE_PROVIDER_0_NAME: provider name 'anthropic' is already used by legacy options "
                 "(--aibridge-bedrock-*, CODER_AIBRIDGE_BEDROCK_*)", id="clash-with-legacy-bedrock"),
    *(pytest.param(provider(0, type="openai", name=name, key="k"),
                   f"CODER_AIBRIDGE_PROVIDER_0_NAME: {name!r} cannot be a provider name", id=f"reserved-{name}")
      for name in ("interceptions", "sessions", "clients", "models", "proxy")),
    pytest.param(provider(0, type="openai", name="Lite LLM", key="k"),
                 "CODER_AIBRIDGE_PROVIDER_0_NAME: 'Lite LLM' cannot be a provider name", id="bad-name"),
    pytest.param(provider(0, type="gemini", key="k"),
                 TYPES + "got 'gemini'", id="bad-type"),
    pytest.param(provider(0, name="nameless", key="k"),
                 TYPES + "got ''", id="no-type"),
    pytest.param(provider(0, type="openai", name="litellm"),
                 "CODER_AIBRIDGE_PROVIDER_0_KEY: provider 'litellm' needs an API key", id="no-key"),
    pytest.param(provider(0, type="openai", key="k", base_url="litellm:4000"),
                 "CODER_AIBRIDGE_PROVIDER_0_BASE_URL: invalid URL", id="bad-base-url"),
    pytest.param(provider(0, type="anthropic", name="br", bedrock_access_key="AK", bedrock_access_key_secret="SK"),
                 "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_REGION: Bedrock needs a region or "
                 "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_BASE_URL", id="bedrock-without-region"),
    pytest.param(provider(0, type="anthropic", name="br", bedrock_region="us-east-1", bedrock_access_key="AK"),
                 "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY: set both CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY "
                 "and CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY_SECRET", id="bedrock-key-without-secret"),
    pytest.param(provider(0, type="anthropic", name="br", bedrock_region="us-east-1"),
                 "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY: Bedrock provider 'br': no AWS credentials found "
                 "(set CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY and "
                 "CODER_AIBRIDGE_PROVIDER_0_BEDROCK_ACCESS_KEY_SECRET", id="bedrock-without-credentials"),
]


@pytest.mark.parametrize(("env", "message"), STARTUP_ERRORS)
async def test_bad_provider_configuration_stops_startup(tmp_path: Path, env: dict[str, str], message: str) -> None:
    home = tmp_path / "home"                 # no ~/.aws; AWS_* are not inherited (run_cli)
    home.mkdir()
    full_env = {"HOME": str(home), "CODER_AIBRIDGE_DATA_DIR": str(tmp_path / "data"),
                "CODER_HTTP_ADDRESS": f"127.0.0.1:{free_port()}", "CODER_AIBRIDGE_ENABLED": "true",
                "AWS_EC2_METADATA_DISABLED": "true", **env}
    result = await asyncio.to_thread(run_cli, ["server"], full_env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {message}"), lines[0]
    assert "Traceback" not in result.stderr and "shown this once" not in result.stdout


async def test_yaml_providers_are_named_by_their_yaml_keys(tmp_path: Path) -> None:
    config = tmp_path / "aibridge.yaml"
    config.write_text(yaml.safe_dump({"aibridge": {"enabled": True, "providers": [
        {"type": "openai", "name": "gw", "key": "k"}, {"type": "anthropic", "name": "gw", "key": "k"}]}}))
    env = {"CODER_CONFIG_PATH": str(config), "CODER_AIBRIDGE_DATA_DIR": str(tmp_path / "data"),
           "CODER_HTTP_ADDRESS": f"127.0.0.1:{free_port()}"}
    result = await asyncio.to_thread(run_cli, ["server"], env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip() == ("error: config aibridge.providers[1].name: provider name 'gw' is already used "
                                     "by config aibridge.providers[0].name")
