"""``aibridge env CLIENT``: print exactly what a developer sets to send a tool through the bridge.

The output goes to stdout and is meant to be pasted (or, for the shell-only clients, evaluated:
``eval "$(aibridge env claude-code --create-token)"``). Everything else — where the URL came from,
the id of a minted token — goes to stderr.

The server URL is ``--url``, else ``CODER_URL``, else the one ``aibridge login`` stored, else the
server's own ``--access-url`` as configured here (``CODER_ACCESS_URL``, ``CODER_HTTP_ADDRESS`` or the YAML file), else
``http://127.0.0.1:3000``.
"""

from __future__ import annotations

import asyncio

import aiohttp
import click
import orjson

from aibridge.bridge.client_byok import BYOK_CLIENTS
from aibridge.bridge.client_setup import KNOWN_CLIENTS, build_proxy_url, render
from aibridge.cli import session
from aibridge.cli.options import fail
from aibridge.config import ConfigError, load_settings


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
              help="Your API token [env: CODER_SESSION_TOKEN; default: `aibridge login`'s]: put in the "
                   "output, or used to mint one.")
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

    CLIENT is one of: claude-code, codex, openai, anthropic, zed, cline, roo, opencode, copilot. With
    --proxy, the settings for the AI Bridge Proxy instead (HTTPS_PROXY and its CA; the tool keeps its
    base URL); copilot (GitHub Copilot: VS Code and the Copilot CLI) has only those.
    """
    if client not in KNOWN_CLIENTS:
        fail(f"unknown client {client!r}; valid clients: {', '.join(KNOWN_CLIENTS)}")
    if byok and client not in BYOK_CLIENTS:
        fail(f"no bring-your-own-key set-up for {client!r}; --byok works with: {', '.join(BYOK_CLIENTS)}")
    if byok and (through_proxy or proxy_url):
        fail("--byok and --proxy do not go together: BYOK sets a base URL and a header")
    stored = session.load()
    if stored is not None and not url:
        url = stored.url
        click.echo(f"using server URL {url} (from `aibridge login`)", err=True)
    base = server_url(url)
    if stored is not None and not token and base == stored.url.rstrip("/"):
        token = stored.token
    if create_token:
        if not token:
            fail("--create-token needs your API token: run `aibridge login URL`, pass --token or set "
                 "CODER_SESSION_TOKEN")
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
