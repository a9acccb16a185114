"""The OpenAI-format provider types (openai-compat, azure, google, openrouter, vercel), the
BYOK-only ``chatgpt`` provider and the ``copilot`` type: what configuration accepts, refuses and
builds (issue 23 §2)."""

from __future__ import annotations

import pytest

from aibridge.bridge.providers import PROVIDER_KINDS, build_provider
from aibridge.bridge.providers.copilot import CopilotProviderConfig
from aibridge.bridge.providers.http import HTTPProvider, HTTPProviderConfig
from aibridge.bridge.providers.openai import ROUTES
from aibridge.config import ConfigError, Settings, load_settings

P = "CODER_AIBRIDGE_PROVIDER_0_"


def settings(**fields: str) -> Settings:
    env = {"CODER_AIBRIDGE_ENABLED": "true", **{P + k: v for k, v in fields.items()}}
    return load_settings({}, env, provider_kinds=PROVIDER_KINDS)


def test_the_types_are_listed_in_the_error() -> None:
    with pytest.raises(ConfigError, match=r"^CODER_AIBRIDGE_PROVIDER_0_TYPE: must be one of openai, anthropic, "
                                          r"openai-compat, azure, google, openrouter, vercel, copilot, got 'gemini'$"):
        settings(TYPE="gemini")


@pytest.mark.parametrize(("ptype", "default"), [
    ("google", "https://generativelanguage.googleapis.com/v1beta/openai/"),
    ("openrouter", "https://openrouter.ai/api/v1/"),
    ("vercel", "https://ai-gateway.vercel.sh/v1/"),
])
def test_vendor_types_default_their_base_url(ptype: str, default: str) -> None:
    [config] = settings(TYPE=ptype, KEY="k").providers
    assert (config.kind, config.type, config.name, config.base_url) == (ptype, ptype, ptype, default)
    provider = build_provider(config)
    assert isinstance(provider, HTTPProvider)
    assert provider.type == ptype and provider.routes is ROUTES     # OpenAI's routes, recorded as its type
    assert provider.auth_headers("k") == {"Authorization": "Bearer k"}
    assert provider.url("v1/chat/completions", "") == default + "chat/completions"


@pytest.mark.parametrize("ptype", ["azure", "openai-compat"])
def test_gateway_types_need_a_base_url_and_a_key(ptype: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{P}BASE_URL: provider '{ptype}' needs a base URL$"):
        settings(TYPE=ptype, KEY="k")
    with pytest.raises(ConfigError, match=rf"^{P}KEY: provider 'gw' needs an API key"):
        settings(TYPE=ptype, NAME="gw", BASE_URL="https://gw.example.com/v1/")


def test_azure_sends_its_key_in_api_key() -> None:
    [config] = settings(TYPE="azure", NAME="az", KEY="az-key",
                        BASE_URL="https://res.openai.azure.com/openai/v1/").providers
    provider = build_provider(config)
    assert isinstance(provider, HTTPProvider)
    assert provider.type == "azure" and provider.auth_headers("az-key") == {"api-key": "az-key"}
    assert provider.url("v1/responses", "") == "https://res.openai.azure.com/openai/v1/responses"
    compat = build_provider(settings(TYPE="openai-compat", KEY="k", BASE_URL="http://gw/v1/").providers[0])
    assert isinstance(compat, HTTPProvider) and compat.auth_headers("k") == {"Authorization": "Bearer k"}


def test_chatgpt_needs_no_key_and_is_byok_only() -> None:
    [config] = settings(TYPE="openai", NAME="chatgpt").providers
    assert isinstance(config, HTTPProviderConfig) and config.byok_only
    assert (config.type, config.name, config.base_url) == ("openai", "chatgpt", "https://chatgpt.com/backend-api/codex")
    provider = build_provider(config)
    assert isinstance(provider, HTTPProvider) and provider.byok_only and provider.secrets() == []
    # Codex logged in with ChatGPT calls {base}/responses: /chatgpt/v1/responses lands on .../codex/responses
    assert provider.url("v1/responses", "") == "https://chatgpt.com/backend-api/codex/responses"
    [explicit] = settings(TYPE="openai", NAME="chatgpt", BASE_URL="http://127.0.0.1:9/backend-api/codex").providers
    assert explicit.base_url == "http://127.0.0.1:9/backend-api/codex"


def test_chatgpt_refuses_a_central_key_and_other_names_still_need_one() -> None:
    with pytest.raises(ConfigError, match=rf"^{P}KEY: provider 'chatgpt' is BYOK only"):
        settings(TYPE="openai", NAME="chatgpt", KEY="sk-central")
    with pytest.raises(ConfigError, match=rf"^{P}KEY: provider 'gpt' needs an API key"):
        settings(TYPE="openai", NAME="gpt")
    [openai] = settings(TYPE="openai", KEY="k").providers
    assert isinstance(openai, HTTPProviderConfig) and not openai.byok_only
    provider = build_provider(openai)
    assert isinstance(provider, HTTPProvider) and not provider.byok_only




@pytest.mark.parametrize(("plan", "host"), [("", "individual"), ("individual", "individual"),
                                            ("Business", "business"), ("enterprise", "enterprise")])
def test_copilot_is_byok_only_with_a_base_url_per_plan(plan: str, host: str) -> None:
    [config] = settings(TYPE="copilot", PLAN=plan).providers
    assert isinstance(config, CopilotProviderConfig) and config.byok_only and config.plan == host
    assert (config.type, config.name, config.base_url) == ("copilot", "copilot", f"https://api.{host}.githubcopilot.com")
    provider = build_provider(config)
    assert isinstance(provider, HTTPProvider) and provider.byok_only and provider.secrets() == []
    assert provider.url("chat/completions", "") == f"https://api.{host}.githubcopilot.com/chat/completions"
    assert provider.url("v1/messages", "") == f"https://api.{host}.githubcopilot.com/v1/messages"
    [explicit] = settings(TYPE="copilot", NAME="copilot-ghe", PLAN=plan, BASE_URL="https://copilot.example.com").providers
    assert (explicit.name, explicit.base_url) == ("copilot-ghe", "https://copilot.example.com")


def test_copilot_refuses_a_key_and_an_unknown_plan() -> None:
    with pytest.raises(ConfigError, match=rf"^{P}KEY: provider 'copilot' \(GitHub Copilot\) is BYOK only: each user's "
                                          r"own GitHub login goes upstream; remove its key$"):
        settings(TYPE="copilot", KEY="ghu_central")
    with pytest.raises(ConfigError, match=rf"^{P}PLAN: must be one of individual, business, enterprise, got 'pro'$"):
        settings(TYPE="copilot", PLAN="pro")
