"""``aibridge login URL``, ``aibridge login token``, ``aibridge logout``: a developer's CLI session.

``login`` opens ``URL/cli-auth`` in the browser, where the signed-in user gets a fresh token (named
``cli``) to paste; the token is checked with ``GET /api/v2/users/me`` and stored with the URL
(cli/session.py). ``logout`` revokes it on the server and removes the file.
"""

from __future__ import annotations

import asyncio
import sys
import webbrowser
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import click
import orjson

from aibridge.cli import session
from aibridge.cli.interceptions import response_message
from aibridge.cli.options import fail

TIMEOUT = aiohttp.ClientTimeout(total=30)


def normalise_url(url: str) -> str:
    """``example.com`` → ``https://example.com``; anything but http(s) with a host is refused."""
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"invalid server URL {url!r}: use e.g. https://aibridge.example.com")
    return url.rstrip("/")


async def _request(method: str, url: str, token: str, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as client, \
            client.request(method, url + path, headers={"Coder-Session-Token": token}) as resp:
        return resp.status, await resp.read()


def request(method: str, url: str, token: str, path: str) -> tuple[int, bytes]:
    """One call; an unreachable server exits with one line."""
    try:
        return asyncio.run(_request(method, url, token, path))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        fail(f"cannot reach {url}: {str(exc) or type(exc).__name__}")


def check_token(url: str, token: str) -> dict[str, Any]:
    status, body = request("GET", url, token, "/api/v2/users/me")
    if status in (401, 403):
        fail(f"{url} refused the token: {response_message(body)}")
    if status != 200:
        fail(f"{status} from {url}/api/v2/users/me: {response_message(body)} (is this an AI Bridge server?)")
    try:
        me: dict[str, Any] = orjson.loads(body)
    except orjson.JSONDecodeError:
        fail(f"{url}/api/v2/users/me did not answer JSON: is this an AI Bridge server?")
    return me


def read_token(cli_auth: str, no_open: bool) -> str:
    """The token the user pastes from the cli-auth page (hidden on a terminal; a line of stdin otherwise)."""
    if no_open or not webbrowser.open(cli_auth):
        click.echo(f"Open this page in your browser, sign in and copy the token:\n\n  {cli_auth}\n", err=True)
    else:
        click.echo(f"Opened {cli_auth} in your browser (if it did not open, visit it): copy the token.", err=True)
    if sys.stdin.isatty():
        return str(click.prompt("Paste your token", hide_input=True, err=True)).strip()
    click.echo("Paste your token: ", err=True, nl=False)
    return sys.stdin.readline().strip()


@click.command("login")
@click.argument("url", metavar="URL")
@click.option("--token", help="Use this token instead of getting one in the browser.")
@click.option("--no-open", is_flag=True, help="Print the sign-in page's URL instead of opening a browser.")
def login(url: str, token: str | None, no_open: bool) -> None:
    """Sign this CLI in to the AI Bridge server at URL (`aibridge login token` prints the stored token).

    Opens URL/cli-auth, where you get a token to paste; it is checked and stored in
    ~/.config/aibridge/session (0600). `aibridge env` and the REST commands then need no --url or --token.
    """
    if url == "token":
        stored = session.load()
        if stored is None:
            fail(f"not signed in: {session.NOT_SIGNED_IN}")
        click.echo(stored.token)
        return
    base = normalise_url(url)
    token = (token or read_token(base + "/cli-auth", no_open)).strip()
    if not token:
        fail("no token given")
    me = check_token(base, token)
    path = session.save(session.Session(base, token))
    click.echo(f"signed in to {base} as {me.get('username', '?')} ({me.get('role', '?')}); session stored in {path}",
               err=True)


@click.command("logout")
def logout() -> None:
    """Revoke the stored token on the server and remove the session file."""
    stored = session.load()
    if stored is None:
        session.remove()
        fail("not signed in: there is no session to end")
    session.remove()
    token_id = stored.token.split("-", 1)[0]
    status, body = request("DELETE", stored.url, stored.token, f"/api/v2/users/me/keys/{token_id}")
    if status not in (204, 401, 403, 404):      # 401/403/404: already revoked, expired or gone
        fail(f"session removed, but {stored.url} did not revoke the token ({status}: {response_message(body)}); "
             "revoke it on the Tokens page")
    click.echo(f"signed out of {stored.url}: the token is revoked and the session removed", err=True)
