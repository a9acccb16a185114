"""Anthropic (and Anthropic-compatible gateways): x-api-key, base URL at the API root."""

from __future__ import annotations

import re
from collections.abc import Mapping

from aibridge.bridge.apis.base import Api
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.providers.http import HTTPProvider, HTTPType
from aibridge.bridge.providers.registry import register

_PASSTHROUGH = re.compile(r"^(v1/models(/.+)?|v1/messages/count_tokens|api/event_logging/.+)$")


class AnthropicProvider(HTTPProvider):
    type = "anthropic"
    apis: Mapping[str, Api] = {"v1/messages": MESSAGES}

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    def is_passthrough(self, method: str, tail: str) -> bool:
        return bool(_PASSTHROUGH.match(tail))


@register
class AnthropicType(HTTPType):
    kind = type = "anthropic"
    legacy_options = ("aibridge_anthropic_key", "aibridge_anthropic_base_url")
    provider = AnthropicProvider
