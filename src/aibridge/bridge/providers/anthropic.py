"""Anthropic (and Anthropic-compatible gateways): x-api-key, base URL at the API root."""

from __future__ import annotations

from collections.abc import Mapping

from aibridge.bridge.apis.base import Api
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.providers.http import HTTPProvider, HTTPType
from aibridge.bridge.providers.registry import register
from aibridge.bridge.routes import RouteTable, route

# Anthropic's API reference (and Claude Code's event logging): Messages intercepted, the rest passed through.
ROUTES = RouteTable([
    route("v1/messages", "POST", MESSAGES),
    route("v1/models", "GET"),
    route("v1/models/{model}", "GET"),
    route("v1/messages/count_tokens", "POST", model_in_body=True),
    route("api/event_logging/{batch}", "POST"),
])


class AnthropicProvider(HTTPProvider):
    type = "anthropic"
    routes = ROUTES
    apis: Mapping[str, Api] = ROUTES.apis

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}


@register
class AnthropicType(HTTPType):
    kind = type = "anthropic"
    legacy_options = ("aibridge_anthropic_key", "aibridge_anthropic_base_url")
    provider = AnthropicProvider
