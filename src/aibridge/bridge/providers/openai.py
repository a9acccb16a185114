"""OpenAI (and OpenAI-compatible gateways): Bearer key, base URL that already ends in /v1/."""

from __future__ import annotations

from collections.abc import Mapping

from aibridge.bridge.apis.base import Api
from aibridge.bridge.apis.chat_completions import CHAT_COMPLETIONS
from aibridge.bridge.apis.responses import RESPONSES
from aibridge.bridge.credentials import GOVERNANCE_HEADER
from aibridge.bridge.providers.http import HTTPProvider, HTTPProviderConfig, HTTPType
from aibridge.bridge.providers.registry import register
from aibridge.bridge.routes import RouteTable, route
from aibridge.config import ProviderFields

# A provider of type openai named ``chatgpt`` serves ChatGPT subscriptions (Codex logged in with
# ChatGPT): BYOK only, the user's own ChatGPT token upstream, no central key.
CHATGPT = "chatgpt"
CHATGPT_BASE_URL = "https://chatgpt.com/backend-api/codex"

# OpenAI's API reference: the two intercepted APIs, and the documented methods of what is passed through.
ROUTES = RouteTable([
    route("v1/chat/completions", "POST", CHAT_COMPLETIONS),
    route("v1/responses", "POST", RESPONSES),
    route("v1/models", "GET"),
    route("v1/models/{model}", "GET"),
    route("v1/responses/input_tokens", "POST", model_in_body=True),
    route("v1/responses/{response}", "GET DELETE"),
    route("v1/responses/{response}/cancel", "POST"),
    route("v1/responses/{response}/input_items", "GET"),
    route("v1/conversations", "POST", creates="conversation"),
    route("v1/conversations/{conversation}", "GET POST DELETE"),
    route("v1/conversations/{conversation}/items", "GET POST"),
    route("v1/conversations/{conversation}/items/{item}", "GET DELETE"),
])


class OpenAIProvider(HTTPProvider):
    type = "openai"
    base_strip = "v1/"
    routes = ROUTES
    apis: Mapping[str, Api] = ROUTES.apis

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def byok_only_help(self) -> str:       # the only BYOK-only OpenAI provider is ``chatgpt``
        return (f"provider {self.name!r} is BYOK only: ChatGPT subscriptions go through AI Bridge with your own "
                f"ChatGPT login as the credential and your AI Bridge token in the {GOVERNANCE_HEADER} header "
                "(Codex: requires_openai_auth = true and env_http_headers; see docs/clients.md)")


@register
class OpenAIType(HTTPType):
    kind = type = "openai"
    legacy_options = ("aibridge_openai_key", "aibridge_openai_base_url")
    provider = OpenAIProvider

    def from_fields(self, fields: ProviderFields) -> HTTPProviderConfig:
        if fields.name != CHATGPT or fields.legacy:
            return super().from_fields(fields)
        if fields.get("KEY"):
            raise fields.error("KEY", f"provider {CHATGPT!r} is BYOK only (each user's own ChatGPT token goes "
                                      "upstream): remove its key")
        base_url = fields.url("BASE_URL", CHATGPT_BASE_URL)
        return HTTPProviderConfig(self.kind, self.type, fields.name, base_url, "", byok_only=True)
