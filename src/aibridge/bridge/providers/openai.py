"""OpenAI (and OpenAI-compatible gateways): Bearer key, base URL that already ends in /v1/."""

from __future__ import annotations

import re
from collections.abc import Mapping

from aibridge.bridge.apis.base import Api
from aibridge.bridge.apis.chat_completions import CHAT_COMPLETIONS
from aibridge.bridge.apis.responses import RESPONSES
from aibridge.bridge.providers.http import HTTPProvider, HTTPType
from aibridge.bridge.providers.registry import register

_PASSTHROUGH = re.compile(r"^v1/(models(/.+)?|conversations(/.+)?|responses/.+)$")


class OpenAIProvider(HTTPProvider):
    type = "openai"
    base_strip = "v1/"
    apis: Mapping[str, Api] = {"v1/chat/completions": CHAT_COMPLETIONS, "v1/responses": RESPONSES}

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def is_passthrough(self, method: str, tail: str) -> bool:
        return bool(_PASSTHROUGH.match(tail))


@register
class OpenAIType(HTTPType):
    kind = type = "openai"
    legacy_options = ("aibridge_openai_key", "aibridge_openai_base_url")
    provider = OpenAIProvider
