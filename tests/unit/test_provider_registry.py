"""Provider kinds register themselves: a new kind is read from its own fields and built without any
change outside its module (the worked example of docs/architecture-providers.md, run for real);
Settings and the option table cannot drift apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from aibridge.bridge.providers import PROVIDER_KINDS, build_provider
from aibridge.bridge.providers.base import UpstreamRequest
from aibridge.bridge.providers.http import HTTPType
from aibridge.bridge.providers.openai import OpenAIProvider
from aibridge.bridge.providers.registry import ProviderType, register
from aibridge.config import OPTIONS, ConfigError, Option, Settings, check_settings_fields, load_settings


# ---- the docs' worked example: what `src/aibridge/bridge/providers/acme.py` would hold
class AcmeProvider(OpenAIProvider):
    """OpenAI's wire format; the key goes in an ``X-Acme-Key`` header."""

    type = "acme"

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"X-Acme-Key": key}


class AcmeType(HTTPType):
    kind = type = "acme"
    provider = AcmeProvider
# ---- end of the example


@pytest.fixture
def with_acme(monkeypatch: pytest.MonkeyPatch) -> list[ProviderType[Any]]:
    kinds = list(PROVIDER_KINDS)
    monkeypatch.setattr("aibridge.bridge.providers.registry.PROVIDER_KINDS", kinds)
    register(AcmeType)          # what `@register` does when the module is imported
    return kinds


def settings(env: dict[str, str], kinds: list[ProviderType[Any]]) -> Settings:
    return load_settings({}, {"CODER_AIBRIDGE_ENABLED": "true", **env}, provider_kinds=kinds)


@dataclass
class Seen:
    path: str = ""
    headers: CIMultiDict[str] | None = None


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def handle(request: web.Request) -> web.Response:
        seen.path, seen.headers = request.path, CIMultiDict(request.headers)
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_get("/openai/v1/models", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/openai/v1/", seen
    await runner.cleanup()


async def test_a_new_kind_is_configured_and_built_from_its_own_module(
        with_acme: list[ProviderType[Any]], gateway: tuple[str, Seen]) -> None:
    base_url, seen = gateway
    s = settings({"CODER_AIBRIDGE_PROVIDER_0_TYPE": "acme", "CODER_AIBRIDGE_PROVIDER_0_KEY": "acme-key",
                  "CODER_AIBRIDGE_PROVIDER_0_BASE_URL": base_url}, with_acme)
    [config] = s.providers
    assert (config.kind, config.type, config.name, config.base_url) == ("acme", "acme", "acme", base_url)
    provider = build_provider(config)
    try:
        response = await provider.send(UpstreamRequest("GET", "v1/models", "", CIMultiDict(), b""))
        assert response.status == 200
        response.close()
    finally:
        await provider.close()
    assert seen.path == "/openai/v1/models"
    assert seen.headers is not None
    assert seen.headers["X-Acme-Key"] == "acme-key"


def test_a_new_kind_is_listed_and_checks_its_fields(with_acme: list[ProviderType[Any]]) -> None:
    with pytest.raises(ConfigError, match=r"^CODER_AIBRIDGE_PROVIDER_0_TYPE: must be one of openai, anthropic, "
                                          r"openai-compat, azure, google, openrouter, vercel, copilot, acme, "
                                          r"got 'gemini'$"):
        settings({"CODER_AIBRIDGE_PROVIDER_0_TYPE": "gemini"}, with_acme)
    with pytest.raises(ConfigError, match=r"^CODER_AIBRIDGE_PROVIDER_0_BASE_URL: provider 'acme' needs a base URL$"):
        settings({"CODER_AIBRIDGE_PROVIDER_0_TYPE": "acme", "CODER_AIBRIDGE_PROVIDER_0_KEY": "k"}, with_acme)
    with pytest.raises(ValueError, match="registered twice"):
        register(AcmeType)


def test_providers_need_their_kinds() -> None:
    with pytest.raises(RuntimeError, match="provider_kinds"):
        load_settings({}, {"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_OPENAI_KEY": "k"})
    assert load_settings({}, {"CODER_AIBRIDGE_OPENAI_KEY": "k"}).providers == ()   # bridge disabled


def test_legacy_bedrock_with_an_anthropic_key_is_named_by_the_key() -> None:
    env = {"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_ANTHROPIC_KEY": "k",
           "CODER_AIBRIDGE_BEDROCK_REGION": "us-east-1", "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY": "AK",
           "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY_SECRET": "SK", "CODER_AIBRIDGE_PROVIDER_0_TYPE": "anthropic",
           "CODER_AIBRIDGE_PROVIDER_0_KEY": "k2"}
    with pytest.raises(ConfigError, match=r"already used by legacy options \(--aibridge-anthropic-key, "
                                          r"CODER_AIBRIDGE_ANTHROPIC_KEY\)$"):
        load_settings({}, env, provider_kinds=PROVIDER_KINDS)
    del env["CODER_AIBRIDGE_PROVIDER_0_TYPE"], env["CODER_AIBRIDGE_PROVIDER_0_KEY"]
    [config] = load_settings({}, env, provider_kinds=PROVIDER_KINDS).providers
    assert (config.kind, config.type, config.name) == ("bedrock", "anthropic", "anthropic")


def test_settings_and_options_cannot_drift_apart() -> None:
    check_settings_fields(OPTIONS)
    extra = Option("aibridge_new_thing", "CODER_AIBRIDGE_NEW_THING", "", "str", "New.")
    with pytest.raises(TypeError, match=r"options without a Settings field \['aibridge_new_thing'\]"):
        check_settings_fields((*OPTIONS, extra))
    with pytest.raises(TypeError, match=r"Settings fields without an option \['trace'\]"):
        check_settings_fields(tuple(o for o in OPTIONS if o.key != "trace"))
    retyped = tuple(Option(o.key, o.env, o.default, "int", o.help) if o.key == "trace" else o for o in OPTIONS)
    with pytest.raises(TypeError, match=r"Settings\.trace is <class 'bool'> but option kind 'int' gives <class 'int'>"):
        check_settings_fields(retyped)
    assert isinstance(load_settings({}, {}).data_dir, Path)
