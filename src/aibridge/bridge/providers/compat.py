"""OpenAI-format provider types: gateways and vendors that speak OpenAI's wire format.

Each is OpenAI's provider (its routes, its APIs, a ``v1/`` base) under its own ``TYPE``, recorded
as ``provider``: ``openai-compat`` (any OpenAI-compatible gateway: a base URL is required),
``azure`` (Azure OpenAI: the key in an ``api-key`` header), ``google`` (Gemini's OpenAI-compatible
endpoint), ``openrouter`` and ``vercel`` (Vercel AI Gateway), the last three with their public base
URL as default.
"""

from __future__ import annotations

from aibridge.bridge.providers.http import HTTPType
from aibridge.bridge.providers.openai import OpenAIProvider
from aibridge.bridge.providers.registry import register


class OpenAICompatProvider(OpenAIProvider):
    type = "openai-compat"


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI takes its key in ``api-key``, not as a bearer (a BYOK request's own headers
    still go as sent)."""

    type = "azure"

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"api-key": key}


class GoogleProvider(OpenAIProvider):
    type = "google"


class OpenRouterProvider(OpenAIProvider):
    type = "openrouter"


class VercelProvider(OpenAIProvider):
    type = "vercel"


@register
class OpenAICompatType(HTTPType):
    kind = type = "openai-compat"
    provider = OpenAICompatProvider


@register
class AzureOpenAIType(HTTPType):
    kind = type = "azure"          # base URL: https://<resource>.openai.azure.com/openai/v1/
    provider = AzureOpenAIProvider


@register
class GoogleType(HTTPType):
    kind = type = "google"
    provider = GoogleProvider
    default_base_url = "https://generativelanguage.googleapis.com/v1beta/openai/"


@register
class OpenRouterType(HTTPType):
    kind = type = "openrouter"
    provider = OpenRouterProvider
    default_base_url = "https://openrouter.ai/api/v1/"


@register
class VercelType(HTTPType):
    kind = type = "vercel"
    provider = VercelProvider
    default_base_url = "https://ai-gateway.vercel.sh/v1/"
