"""GitHub Copilot: each user's own Copilot subscription through the bridge (BYOK only).

Copilot's API (one host per plan) speaks OpenAI's Chat Completions and Responses and Anthropic's
Messages: those three are intercepted, the rest of the API is passed through. There is no
central key: every request goes upstream with the user's own GitHub/Copilot bearer and the
editor's headers (``Editor-Version``, ``Copilot-Integration-Id``, …) as sent; Copilot refuses a
request without ``Editor-Version``. Copilot cannot change its base URL, so it comes through the
AI Bridge Proxy, which decrypts the plan hosts (``proxy/hosts.py``) and takes such a request as
BYOK for the user of its CONNECT (``routing.py``).

Settings: ``TYPE=copilot``, optional ``PLAN`` (``individual``, ``business``, ``enterprise``:
which host is the default ``BASE_URL``) and ``BASE_URL``; a ``KEY`` is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aibridge.bridge.apis.base import Api
from aibridge.bridge.apis.chat_completions import CHAT_COMPLETIONS
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.apis.responses import RESPONSES
from aibridge.bridge.credentials import GOVERNANCE_HEADER
from aibridge.bridge.providers.http import HTTPProvider, HTTPProviderConfig, HTTPType
from aibridge.bridge.providers.registry import register
from aibridge.bridge.routes import Match, RouteTable, route
from aibridge.config import ProviderFields

PLAN_BASE_URLS = {
    "individual": "https://api.individual.githubcopilot.com",
    "business": "https://api.business.githubcopilot.com",
    "enterprise": "https://api.enterprise.githubcopilot.com",
}
DEFAULT_PLAN = "individual"

# The rest of Copilot's API (its model session, agents, _ping, …), relayed with the user's own bearer.
PASS_THE_REST = route("{path+}", "GET POST PUT PATCH DELETE")
# A path ending like a model call (``v1/chat/completions``) is intercepted above or refused, never
# relayed unrecorded by the catch-all.
_MODEL_CALLS = frozenset({"completions", "responses", "messages"})


class CopilotRoutes(RouteTable):
    def find(self, method: str, tail: str) -> Match | None:
        found = super().find(method, tail)
        if found is not None and found.route is PASS_THE_REST and tail.rpartition("/")[2] in _MODEL_CALLS:
            return None
        return found


ROUTES = CopilotRoutes([
    route("chat/completions", "POST", CHAT_COMPLETIONS),
    route("responses", "POST", RESPONSES),
    route("v1/messages", "POST", MESSAGES),
    route("models", "GET"),
    route("models/{model}", "GET"),
    route("embeddings", "POST", model_in_body=True),
    PASS_THE_REST,
])


def _byok_only_help(name: str) -> str:
    """The 403 of a request without the user's AI Bridge token (a direct route without the header)."""
    return (f"provider {name!r} is GitHub Copilot, BYOK only: Copilot sends your own GitHub login upstream "
            "and cannot change its base URL, so it goes through the AI Bridge Proxy (VS Code: http.proxy, "
            "Copilot CLI: HTTPS_PROXY, with your AI Bridge token as the proxy password, and the proxy CA "
            f"trusted; see docs/clients.md). A direct request needs your AI Bridge token in {GOVERNANCE_HEADER}")


class CopilotProvider(HTTPProvider):
    type = "copilot"
    byok_only = True
    routes = ROUTES
    apis: Mapping[str, Api] = ROUTES.apis

    def auth_headers(self, key: str) -> dict[str, str]:
        return {}       # no key of its own: every request carries the user's (routing.py lets no other through)

    def byok_only_help(self) -> str:
        return _byok_only_help(self.name)


@dataclass(frozen=True)
class CopilotProviderConfig(HTTPProviderConfig):
    plan: str = DEFAULT_PLAN      # which plan host the proxy maps to this provider first (proxy/hosts.py)


@register
class CopilotType(HTTPType):
    kind = type = "copilot"
    provider = CopilotProvider

    def from_fields(self, fields: ProviderFields) -> CopilotProviderConfig:
        if fields.get("KEY"):
            raise fields.error("KEY", f"provider {fields.name!r} (GitHub Copilot) is BYOK only: each user's own "
                                      "GitHub login goes upstream; remove its key")
        plan = fields.get("PLAN").strip().lower() or DEFAULT_PLAN
        if plan not in PLAN_BASE_URLS:
            raise fields.error("PLAN", f"must be one of {', '.join(PLAN_BASE_URLS)}, got {plan!r}")
        base_url = fields.url("BASE_URL", PLAN_BASE_URLS[plan])
        return CopilotProviderConfig(self.kind, self.type, fields.name, base_url, "", byok_only=True, plan=plan)
