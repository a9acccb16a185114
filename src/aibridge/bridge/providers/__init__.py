"""Upstream providers, built from configuration."""

from __future__ import annotations

from aibridge.bridge.providers.base import Provider
from aibridge.config import ProviderConfig


def build_provider(config: ProviderConfig) -> Provider:
    if config.bedrock is not None:
        from aibridge.bridge.providers.bedrock import BedrockProvider
        return BedrockProvider(config.name, config.bedrock)
    if config.type == "openai":
        from aibridge.bridge.providers.openai import OpenAIProvider
        return OpenAIProvider(config.name, config.key, config.base_url)
    from aibridge.bridge.providers.anthropic import AnthropicProvider
    return AnthropicProvider(config.name, config.key, config.base_url)
