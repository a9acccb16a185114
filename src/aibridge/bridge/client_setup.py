"""What a developer sets so a tool sends its traffic through the bridge: the lines ``aibridge env
CLIENT`` prints and the web UI's Tokens page shows with a new token (one source, so they never drift).

Pure text building: no I/O.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aibridge.bridge.client_byok import BYOK_CLIENTS

PLACEHOLDER = "<your AI Bridge token>"
CODEX_ENV_KEY = "AIBRIDGE_TOKEN"
OPENCODE_ENV_KEY = "AIBRIDGE_TOKEN"
CA_ROUTE = "/api/v2/aibridge/proxy/ca-cert.pem"


@dataclass(frozen=True)
class Target:
    """What a snippet is built from."""

    url: str     # server URL without a trailing slash
    token: str   # the token, or PLACEHOLDER

    @property
    def anthropic(self) -> str:
        return f"{self.url}/api/v2/aibridge/anthropic"

    @property
    def openai(self) -> str:
        return f"{self.url}/api/v2/aibridge/openai/v1"


def _exports(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in pairs]


def _json(doc: object) -> list[str]:
    return json.dumps(doc, indent=2).splitlines()


def claude_code(t: Target) -> list[str]:
    return [
        "# Claude Code: set these in your shell (e.g. ~/.bashrc or ~/.zshrc), then run `claude`.",
        "# (ANTHROPIC_AUTH_TOKEN works instead of ANTHROPIC_API_KEY; it is sent as a Bearer token.)",
        *_exports([("ANTHROPIC_BASE_URL", t.anthropic), ("ANTHROPIC_API_KEY", t.token)]),
    ]


def codex(t: Target) -> list[str]:
    return [
        "# Codex CLI ignores OPENAI_BASE_URL: it needs a custom model provider.",
        "# 1. Add to ~/.codex/config.toml ($CODEX_HOME/config.toml); model_provider must stay above the",
        "#    first [table] of the file (or leave it out and run `codex -c model_provider=aibridge`).",
        'model_provider = "aibridge"',
        "",
        "[model_providers.aibridge]",
        'name = "AI Bridge"',
        f"base_url = {json.dumps(t.openai)}",
        f'env_key = "{CODEX_ENV_KEY}"',
        'wire_api = "responses"',
        "",
        "# 2. Set the token in your shell (e.g. ~/.bashrc), then run `codex`:",
        *_exports([(CODEX_ENV_KEY, t.token)]),
    ]


def openai_sdk(t: Target) -> list[str]:
    return [
        "# OpenAI SDKs (Python, Node, Go, ...) and OpenAI-compatible tools read these:",
        *_exports([("OPENAI_BASE_URL", t.openai), ("OPENAI_API_KEY", t.token)]),
    ]


def anthropic_sdk(t: Target) -> list[str]:
    return [
        "# Anthropic SDKs (Python, TypeScript, Go, ...) and Anthropic-compatible tools read these:",
        *_exports([("ANTHROPIC_BASE_URL", t.anthropic), ("ANTHROPIC_API_KEY", t.token)]),
    ]


def zed(t: Target) -> list[str]:
    settings = {"language_models": {"anthropic": {"api_url": t.anthropic}, "openai": {"api_url": t.openai}}}
    return [
        "# Zed: point its Anthropic and OpenAI providers at the bridge.",
        "# 1. Merge into settings.json (Cmd/Ctrl+, or ~/.config/zed/settings.json):",
        *_json(settings),
        "# 2. Zed reads the keys from these variables when started from this shell; or paste the",
        "#    token as the API key under Agent Panel > Settings > LLM Providers > Anthropic / OpenAI.",
        *_exports([("ANTHROPIC_API_KEY", t.token), ("OPENAI_API_KEY", t.token)]),
    ]


def _ui(title: str, fields: list[tuple[str, str]]) -> list[str]:
    width = max(len(name) for name, _ in fields) + 1
    return [title, *(f"  {name + ':':<{width}} {value}" for name, value in fields), ""]


def _vscode_extension(t: Target, heading: str, model_field: str) -> list[str]:
    """Cline and Roo Code share their settings form (Roo Code began as a fork of Cline)."""
    return [
        heading,
        "",
        *_ui("Anthropic", [
            ("API Provider", "Anthropic"),
            ("Anthropic API Key", t.token),
            ("Use custom base URL", "checked"),
            ("Base URL", t.anthropic),
            ("Model", "a Claude model"),
        ]),
        *_ui("OpenAI Compatible", [
            ("API Provider", "OpenAI Compatible"),
            ("Base URL", t.openai),
            ("API Key", t.token),
            (model_field, "e.g. gpt-4.1"),
        ]),
    ]


def cline(t: Target) -> list[str]:
    return _vscode_extension(
        t, "Cline (VS Code): open Cline > Settings > API Configuration and use either provider.", "Model ID")


def roo(t: Target) -> list[str]:
    return _vscode_extension(
        t, "Roo Code (VS Code): open Roo Code > Settings > Providers and use either provider.", "Model")


def opencode(t: Target) -> list[str]:
    key = "{env:" + OPENCODE_ENV_KEY + "}"
    config = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "anthropic": {"options": {"baseURL": f"{t.anthropic}/v1", "apiKey": key}},
            "openai": {"options": {"baseURL": t.openai, "apiKey": key}},
        },
    }
    return [
        "# OpenCode: point its Anthropic and OpenAI providers at the bridge.",
        "# 1. Merge into ~/.config/opencode/opencode.json (or opencode.json in a project):",
        *_json(config),
        "# 2. Set the token in your shell (e.g. ~/.bashrc), then run `opencode`:",
        *_exports([(OPENCODE_ENV_KEY, t.token)]),
    ]


CLIENTS: dict[str, Callable[[Target], list[str]]] = {
    "claude-code": claude_code,
    "codex": codex,
    "openai": openai_sdk,
    "anthropic": anthropic_sdk,
    "zed": zed,
    "cline": cline,
    "roo": roo,
    "opencode": opencode,
}


# Through the AI Bridge Proxy (--proxy): which CA variable each client reads.
PROXY_NOTES = {
    "claude-code": "Claude Code (Node.js) reads HTTPS_PROXY and NODE_EXTRA_CA_CERTS; leave ANTHROPIC_BASE_URL unset.",
    "codex": "Codex reads HTTPS_PROXY and SSL_CERT_FILE (or the system trust store); keep its default provider.",
    "openai": "Python SDKs read SSL_CERT_FILE (httpx) / REQUESTS_CA_BUNDLE, Node SDKs NODE_EXTRA_CA_CERTS.",
    "anthropic": "Python SDKs read SSL_CERT_FILE (httpx) / REQUESTS_CA_BUNDLE, Node SDKs NODE_EXTRA_CA_CERTS.",
    "zed": "Zed reads HTTPS_PROXY (or \"proxy\" in settings.json) and the system trust store.",
    "cline": "VS Code: set http.proxy to the HTTPS_PROXY value and trust the CA in the system trust store.",
    "roo": "VS Code: set http.proxy to the HTTPS_PROXY value and trust the CA in the system trust store.",
    "opencode": "OpenCode reads HTTPS_PROXY and NODE_EXTRA_CA_CERTS.",
}
CA_DIR = "$HOME/.config/aibridge"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def build_proxy_url(url: str, given: str | None) -> str:
    """HTTPS_PROXY with the token (from $AIBRIDGE_TOKEN) as the password: --proxy-url, else the
    server's host on port 8888. Tokens are URL-safe, so the variable goes in as it is."""
    parts = urlsplit(given or f"http://{urlsplit(url).hostname or '127.0.0.1'}:8888")
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://coder:${{AIBRIDGE_TOKEN}}@{host}"


def proxy_setup(client: str, t: Target, proxy: str) -> list[str]:
    """HTTPS_PROXY plus the proxy CA: for tools that keep calling api.openai.com / api.anthropic.com.

    Runnable top to bottom (``eval "$(aibridge env CLIENT --proxy ...)"``).
    """
    ca, bundle = f"{CA_DIR}/proxy-ca.pem", f"{CA_DIR}/ca-bundle.pem"
    return [
        f"# {client} through the AI Bridge Proxy: no base URL to change.",
        f"# {PROXY_NOTES[client]}",
        "# 1. The proxy, with your token as its password; NO_PROXY keeps local traffic and the server off it:",
        *_exports([("AIBRIDGE_TOKEN", t.token)]),
        f'export HTTPS_PROXY="{proxy}"',
        *_exports([("NO_PROXY", ",".join(dict.fromkeys(
            ["localhost", "127.0.0.1", "::1", urlsplit(t.url).hostname or "localhost"])))]),
        "# 2. Save the proxy CA, and a bundle of it plus the system CAs (SSL_CERT_FILE, REQUESTS_CA_BUNDLE",
        "#    and CURL_CA_BUNDLE replace the default CAs, and tunnelled hosts must still be trusted):",
        f'mkdir -p "{CA_DIR}"',
        f'curl -fsS -H "Coder-Session-Token: $AIBRIDGE_TOKEN" {shlex.quote(t.url + CA_ROUTE)} -o "{ca}"',
        f'cat {SYSTEM_BUNDLE} "{ca}" > "{bundle}"',
        "#    (or `aibridge proxy ca-cert` on the server; or trust it system-wide: copy it to",
        "#    /usr/local/share/ca-certificates/aibridge-proxy.crt and run update-ca-certificates)",
        "# 3. Trust it:",
        f'export NODE_EXTRA_CA_CERTS="{ca}"',
        *(f'export {name}="{bundle}"' for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")),
    ]


def copilot(t: Target, proxy: str) -> list[str]:
    """GitHub Copilot cannot change its base URL: through the proxy only, the developer's own GitHub
    login going upstream (BYOK as the proxy's user; docs/clients.md)."""
    ca = f"{CA_DIR}/proxy-ca.pem"
    return [
        "# GitHub Copilot through the AI Bridge Proxy: Copilot keeps calling api.individual (.business,",
        "# .enterprise).githubcopilot.com with your own GitHub login; the proxy records every request under",
        "# your AI Bridge token, its password. (The server needs a provider of type copilot.)",
        "# 1. Your token, and the proxy CA:",
        *_exports([("AIBRIDGE_TOKEN", t.token)]),
        f'mkdir -p "{CA_DIR}"',
        f'curl -fsS -H "Coder-Session-Token: $AIBRIDGE_TOKEN" {shlex.quote(t.url + CA_ROUTE)} -o "{ca}"',
        "# 2. Copilot CLI (Node.js) reads HTTPS_PROXY and NODE_EXTRA_CA_CERTS; then run `copilot`:",
        f'export HTTPS_PROXY="{proxy}"',
        f'export NODE_EXTRA_CA_CERTS="{ca}"',
        *_exports([("NO_PROXY", ",".join(dict.fromkeys(
            ["localhost", "127.0.0.1", "::1", urlsplit(t.url).hostname or "localhost"])))]),
        "# 3. VS Code (Copilot Chat) reads the system trust store: add the CA to it (Debian/Ubuntu:",
        f'#      sudo cp "{ca}" /usr/local/share/ca-certificates/aibridge-proxy.crt && sudo update-ca-certificates',
        f'#    macOS: sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "{ca}"),',
        "#    then set its proxy, with your token as the password, in settings.json, and reload the window:",
        *("#   " + line for line in _json({"http.proxy": proxy.replace("${AIBRIDGE_TOKEN}", t.token)})),
    ]


# Tools that cannot change their base URL: the proxy set-up is their only one.
PROXY_ONLY: dict[str, Callable[[Target, str], list[str]]] = {"copilot": copilot}
KNOWN_CLIENTS = (*CLIENTS, *PROXY_ONLY)


def render(client: str, url: str, token: str = "", proxy: str | None = None, byok: bool = False) -> str:
    """The snippet for ``client`` (one of KNOWN_CLIENTS) as printed; through the proxy when ``proxy``
    is set (always for PROXY_ONLY); with the developer's own key when ``byok`` is (a key of BYOK_CLIENTS)."""
    target = Target(url.rstrip("/"), token or PLACEHOLDER)
    if client in PROXY_ONLY:
        lines = PROXY_ONLY[client](target, proxy or build_proxy_url(target.url, None))
    else:
        lines = (BYOK_CLIENTS[client](target) if byok else
                 proxy_setup(client, target, proxy) if proxy else CLIENTS[client](target))
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)
