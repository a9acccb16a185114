"""The set-up lines of each client, as ``aibridge env CLIENT`` prints them (bridge/client_setup.py).

Returned with a token made through the REST API (the web UI's Tokens page shows them once, with
the secret), and at ``GET /api/v2/aibridge/env/{client}`` with a placeholder instead of a token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from aibridge.bridge.client_setup import KNOWN_CLIENTS, PROXY_ONLY, build_proxy_url, render
from aibridge.config import Settings
from aibridge.rest.common import APIError, json_response
from aibridge.server_keys import SETTINGS

# What the Tokens page offers, in its order: (id, title, client, through the proxy).
SHOWN = (
    ("claude-code", "Claude Code", "claude-code", False),
    ("codex", "Codex", "codex", False),
    ("openai", "OpenAI SDKs", "openai", False),
    ("anthropic", "Anthropic SDKs", "anthropic", False),
    ("proxy", "Proxy mode (Claude Code)", "claude-code", True),
)


def _proxy_url(settings: Settings) -> str:
    """The proxy's port on the host developers reach the server by (its listen address may be a wildcard)."""
    port = settings.aibridge_proxy_listen_addr.rpartition(":")[2] or "8888"
    host = urlsplit(settings.public_url).hostname or "127.0.0.1"
    return build_proxy_url(settings.public_url, f"http://{host}:{port}")


def setup_lines(settings: Settings, token: str = "") -> list[dict[str, Any]]:
    """Every shown client's lines for ``token`` (the placeholder when empty)."""
    base = settings.public_url
    return [{"id": ident, "title": title, "client": client, "proxy": proxied,
             "text": render(client, base, token, _proxy_url(settings) if proxied else None)}
            for ident, title, client, proxied in SHOWN]


async def get_env(request: web.Request) -> web.Response:
    client = request.match_info["client"]
    if client not in KNOWN_CLIENTS:
        raise APIError(404, f"unknown client {client!r}", f"use one of {', '.join(KNOWN_CLIENTS)}")
    settings = request.app[SETTINGS]
    proxied = request.query.get("proxy", "") in ("1", "true") or client in PROXY_ONLY
    text = render(client, settings.public_url, "", _proxy_url(settings) if proxied else None)
    return json_response({"client": client, "proxy": proxied, "text": text})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v2/aibridge/env/{client}", get_env)
