"""``aibridge env CLIENT --byok`` (``bridge/client_setup.py``): the set-ups where the developer's own provider key (or
subscription token) goes upstream and the AI Bridge token rides in ``X-Coder-AI-Governance-Token``
(docs/byok.md)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Protocol

GOVERNANCE_HEADER = "X-Coder-AI-Governance-Token"
TOKEN_ENV = "AIBRIDGE_TOKEN"


class _Target(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def token(self) -> str: ...

    @property
    def anthropic(self) -> str: ...

    @property
    def openai(self) -> str: ...


def _exports(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in pairs]


def claude_code(t: _Target) -> list[str]:
    header = f"{GOVERNANCE_HEADER}: {t.token}"
    return [
        "# Claude Code with your own Anthropic API key (billed to you; recorded by AI Bridge as BYOK):",
        *_exports([("ANTHROPIC_BASE_URL", t.anthropic), ("ANTHROPIC_API_KEY", "<your own Anthropic API key>"),
                   ("ANTHROPIC_CUSTOM_HEADERS", header)]),
        "",
        "# Or with a Claude Pro/Max subscription (an OAuth token, e.g. from `claude setup-token`), sent as",
        "# 'Authorization: Bearer' — leave ANTHROPIC_API_KEY unset:",
        "#   unset ANTHROPIC_API_KEY",
        *("#   " + line for line in _exports([("ANTHROPIC_BASE_URL", t.anthropic),
                                             ("ANTHROPIC_AUTH_TOKEN", "<your Claude OAuth token>"),
                                             ("ANTHROPIC_CUSTOM_HEADERS", header)])),
    ]


def codex(t: _Target) -> list[str]:
    return [
        "# Codex CLI with your own OpenAI key: a model provider that sends it, plus your AI Bridge token",
        "# in a header read from the environment.",
        "# 1. Add to ~/.codex/config.toml ($CODEX_HOME/config.toml), above its first [table]:",
        'model_provider = "aibridge-byok"',
        "",
        "[model_providers.aibridge-byok]",
        'name = "AI Bridge (own key)"',
        f"base_url = {json.dumps(t.openai)}",
        'env_key = "OPENAI_API_KEY"',
        'wire_api = "responses"',
        f'env_http_headers = {{ "{GOVERNANCE_HEADER}" = "{TOKEN_ENV}" }}',
        "",
        "# 2. Set both in your shell, then run `codex`:",
        *_exports([("OPENAI_API_KEY", "<your own OpenAI API key>"), (TOKEN_ENV, t.token)]),
        "",
        *("#   " + line if line else "#" for line in codex_chatgpt(t)),
    ]


def codex_chatgpt(t: _Target) -> list[str]:
    """Codex logged in with ChatGPT, through the server's BYOK-only ``chatgpt`` provider (docs/providers.md)."""
    return [
        "Or with your ChatGPT subscription (`codex login`, Sign in with ChatGPT), if the server has a",
        "provider named chatgpt: its own login is the credential (requires_openai_auth), same AIBRIDGE_TOKEN:",
        'model_provider = "aibridge-chatgpt"',
        "",
        "[model_providers.aibridge-chatgpt]",
        'name = "AI Bridge (ChatGPT)"',
        f"base_url = {json.dumps(t.url + '/api/v2/aibridge/chatgpt/v1')}",
        'wire_api = "responses"',
        "requires_openai_auth = true",
        f'env_http_headers = {{ "{GOVERNANCE_HEADER}" = "{TOKEN_ENV}" }}',
    ]


def anthropic_sdk(t: _Target) -> list[str]:
    return [
        "# Anthropic SDKs with your own key: add the header to every request, e.g. in Python",
        "#   anthropic.Anthropic(default_headers={" + json.dumps(GOVERNANCE_HEADER) + ": os.environ['"
        + TOKEN_ENV + "']})",
        *_exports([("ANTHROPIC_BASE_URL", t.anthropic), ("ANTHROPIC_API_KEY", "<your own Anthropic API key>"),
                   (TOKEN_ENV, t.token)]),
    ]


def openai_sdk(t: _Target) -> list[str]:
    return [
        "# OpenAI SDKs with your own key: add the header to every request, e.g. in Python",
        "#   openai.OpenAI(default_headers={" + json.dumps(GOVERNANCE_HEADER) + ": os.environ['"
        + TOKEN_ENV + "']})",
        *_exports([("OPENAI_BASE_URL", t.openai), ("OPENAI_API_KEY", "<your own OpenAI API key>"),
                   (TOKEN_ENV, t.token)]),
    ]


BYOK_CLIENTS: dict[str, Callable[[_Target], list[str]]] = {
    "claude-code": claude_code,
    "codex": codex,
    "anthropic": anthropic_sdk,
    "openai": openai_sdk,
}
