"""``aibridge env CLIENT``: print exactly what a developer sets to send a tool through the bridge.

The output goes to stdout and is meant to be pasted (or, for the shell-only clients, evaluated:
``eval "$(aibridge env claude-code --create-token)"``). Everything else — where the URL came from,
the id of a minted token — goes to stderr.

The server URL is ``--url``, else ``CODER_URL``, else the server's own ``--access-url`` as
configured here (``CODER_ACCESS_URL``, ``CODER_HTTP_ADDRESS`` or the YAML file), else
``http://127.0.0.1:3000``.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import click
import orjson

from aibridge.cli.env_byok import BYOK_CLIENTS
from aibridge.cli.options import fail
from aibridge.config import ConfigError, load_settings

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


def render(client: str, url: str, token: str = "", proxy: str | None = None, byok: bool = False) -> str:
    """The snippet for ``client`` (a key of CLIENTS) as printed; through the proxy when ``proxy`` is
    set; with the developer's own key when ``byok`` is (a key of BYOK_CLIENTS)."""
    target = Target(url.rstrip("/"), token or PLACEHOLDER)
    lines = (BYOK_CLIENTS[client](target) if byok else
             proxy_setup(client, target, proxy) if proxy else CLIENTS[client](target))
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def server_url(url: str | None) -> str:
    """--url / CODER_URL, else the server's access URL as configured here, else the default."""
    if url:
        return url.rstrip("/")
    try:
        return load_settings(storage_only=True).public_url
    except ConfigError as exc:
        fail(f"cannot work out the server URL ({exc}); pass --url")


async def mint_token(url: str, token: str, client: str, lifetime: str | None) -> dict[str, str]:
    endpoint = f"{url}/api/v2/users/me/keys/tokens"
    body: dict[str, str] = {"token_name": f"aibridge-env-{client}"}
    if lifetime:
        body["lifetime"] = lifetime
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.post(endpoint, data=orjson.dumps(body),
                         headers={"Coder-Session-Token": token, "Content-Type": "application/json"}) as resp:
        payload = await resp.read()
        if resp.status != 201:
            fail(f"{resp.status} from {endpoint}: {_message(payload)}")
        doc = orjson.loads(payload)
    if not isinstance(doc, dict) or not isinstance(doc.get("key"), str):
        fail(f"unexpected answer from {endpoint}")
    return {k: str(v) for k, v in doc.items()}


def _message(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
        return f"{doc.get('message', '')} {doc.get('detail', '')}".strip()
    except (orjson.JSONDecodeError, AttributeError):
        return body.decode(errors="replace")[:200]


@click.command("env")
@click.argument("client", metavar="CLIENT")
@click.option("--create-token", is_flag=True,
              help="Mint a new token for the current user (REST API, authenticated with --token) and use it.")
@click.option("--url", envvar="CODER_URL", help="Server URL [env: CODER_URL; default: the server's access URL].")
@click.option("--token", envvar="CODER_SESSION_TOKEN",
              help="Your API token [env: CODER_SESSION_TOKEN]: put in the output, or used to mint one.")
@click.option("--lifetime", default=None, help="Lifetime of a token made with --create-token (e.g. 720h, 90d).")
@click.option("--proxy", "through_proxy", is_flag=True,
              help="Use the AI Bridge Proxy (HTTPS_PROXY and its CA) instead of a base URL.")
@click.option("--proxy-url", default=None,
              help="The proxy's address [default: http://<server host>:8888]; the token is added as its password.")
@click.option("--byok", is_flag=True,
              help="Bring your own key: your provider key or subscription goes upstream, the AI Bridge token "
                   "in X-Coder-AI-Governance-Token (claude-code, codex, openai, anthropic).")
def env(client: str, create_token: bool, url: str | None, token: str | None, lifetime: str | None,
        through_proxy: bool, proxy_url: str | None, byok: bool) -> None:
    """Print what a developer sets so CLIENT talks to AI Bridge.

    CLIENT is one of: claude-code, codex, openai, anthropic, zed, cline, roo, opencode. With --proxy,
    the settings for the AI Bridge Proxy instead (HTTPS_PROXY and its CA; the tool keeps its base URL).
    """
    if client not in CLIENTS:
        fail(f"unknown client {client!r}; valid clients: {', '.join(CLIENTS)}")
    if byok and client not in BYOK_CLIENTS:
        fail(f"no bring-your-own-key set-up for {client!r}; --byok works with: {', '.join(BYOK_CLIENTS)}")
    if byok and (through_proxy or proxy_url):
        fail("--byok and --proxy do not go together: BYOK sets a base URL and a header")
    base = server_url(url)
    if create_token:
        if not token:
            fail("--create-token needs your API token: pass --token or set CODER_SESSION_TOKEN")
        try:
            made = asyncio.run(mint_token(base, token, client, lifetime))
        except (aiohttp.ClientError, TimeoutError) as exc:
            fail(f"cannot reach {base}: {exc or type(exc).__name__}")
        token = made["key"]
        click.echo(f"created token {made.get('id', '')} (expires {made.get('expires_at', '?')})", err=True)
    if not url:
        click.echo(f"using server URL {base} (set --url or CODER_URL to change it)", err=True)
    proxy = build_proxy_url(base, proxy_url) if through_proxy or proxy_url else None
    click.echo(render(client, base, token or "", proxy, byok))
