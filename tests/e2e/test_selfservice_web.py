"""The Tokens, cli-auth and Users pages in headless Chromium against a real two-worker server
(SQLite and PostgreSQL); the browser plumbing is test_web.py's."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from tests.e2e import test_web
from tests.e2e.conftest import bridge_env
from tests.e2e.test_selfservice import CHAT_MODEL, add_to_group
from tests.e2e.test_web import Page, sign_in
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess, base_env

devtools, page = test_web.devtools, test_web.page      # the browser fixtures
CONNECTIONS = 8        # fresh connections, each to whichever worker accepts it


@pytest.fixture(scope="module")
async def server(module_database: Database) -> AsyncIterator[ServerProcess]:
    fake = FakeUpstream()
    await fake.start()
    proc = await ServerProcess(module_database, env={**bridge_env(fake), "CODER_AIBRIDGE_WORKERS": "2"}).start()
    try:
        yield proc
    finally:
        proc.stop()
        await fake.stop()


async def ask(url: str, token: str) -> None:
    """One chat completion on a connection of its own (a new client: a new connection)."""
    client = openai.AsyncOpenAI(base_url=f"{url}/api/v2/aibridge/openai/v1", api_key=token, max_retries=0, timeout=30)
    try:
        await client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}])
    finally:
        await client.close()


async def test_tokens_page_creates_shows_setup_and_revokes_on_every_worker(server: ServerProcess, page: Page) -> None:
    await sign_in(page, server.url, server.create_user("tina"), "tina")
    await page.click("#tabs a[data-view=tokens]")
    await page.wait("!document.querySelector('#tokens-view').hidden && "
                    "document.querySelector('#tokens-view').getAttribute('aria-busy') === 'false'", "the Tokens page")
    assert await page.js("document.querySelectorAll('#users-tab:not([hidden])').length") == 0   # not an owner
    await page.type("#token-form input[name=token_name]", "laptop")
    await page.type("#token-form input[name=lifetime]", "7d")
    await page.click("#token-form button[type=submit]")
    await page.wait("!document.querySelector('#token-created').hidden", "the new token")
    secret = await page.text("#token-created pre.secret")
    assert await page.text("#token-created section[data-client=claude-code] pre") == "\n".join([
        "# Claude Code: set these in your shell (e.g. ~/.bashrc or ~/.zshrc), then run `claude`.",
        "# (ANTHROPIC_AUTH_TOKEN works instead of ANTHROPIC_API_KEY; it is sent as a Bearer token.)",
        f"export ANTHROPIC_BASE_URL={server.url}/api/v2/aibridge/anthropic",
        f"export ANTHROPIC_API_KEY={secret}"])
    for client in ("codex", "openai", "anthropic", "proxy"):
        assert secret in await page.text(f"#token-created section[data-client={client}] pre"), client
    token_id = secret.split("-", 1)[0]
    row = f"#tokens-table tr[data-id='{token_id}']"
    await page.wait(f"!!document.querySelector({json.dumps(row)})", "the token's row")
    row_text = await page.text(row)
    assert "laptop" in row_text and "never" in row_text and "active" in row_text

    # Warm both workers' caches with the token, then revoke it on the page.
    await asyncio.gather(*(ask(server.url, secret) for _ in range(CONNECTIONS)))
    last_used = f"document.querySelector({json.dumps(row + ' .last-used')}).textContent"
    for _ in range(50):         # written a second after the use (off the hot path): reload until it shows
        await page.js("loadTokens()")
        if await page.js(last_used) != "never":
            break
        await asyncio.sleep(0.2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", await page.js(last_used))
    await page.click(f"{row} button.revoke")
    await page.wait(f"document.querySelector({json.dumps(row)}).textContent.includes('revoked')", "revoked")
    results = await asyncio.gather(*(ask(server.url, secret) for _ in range(CONNECTIONS)), return_exceptions=True)
    assert all(isinstance(r, openai.PermissionDeniedError) and "revoked" in str(r) for r in results), results
    assert page.problems() == []


async def test_cli_auth_page_hands_the_cli_a_token(server: ServerProcess, page: Page, tmp_path: Path) -> None:
    await page.send("Page.navigate", {"url": server.url + "/cli-auth"})
    await page.wait("location.hash === '#cli-auth' && document.readyState === 'complete' && "
                    "!document.querySelector('#signin-view').hidden",
                    "the sign-in box on the cli-auth page")
    await page.type("#token-input", server.create_user("carl"))
    await page.click("#signin-form button[type=submit]")
    await page.wait("!document.querySelector('#cli-auth-view').hidden && "
                    "!!document.querySelector('#cli-auth-token pre.secret')", "the CLI token")
    token = await page.text("#cli-auth-token pre.secret")
    await page.click("#cli-auth-token button.copy")
    await page.wait("document.querySelector('#cli-auth-token button.copy').textContent === 'Copied'", "copied")
    status, keys = await Client(server.url, token).get("/api/v2/users/me/keys/tokens")
    assert status == 200 and [k["token_name"] for k in keys if token.startswith(k["id"])] == ["cli"]

    env = base_env({"XDG_CONFIG_HOME": str(tmp_path), "BROWSER": "false"})
    login = subprocess.run([sys.executable, "-m", "aibridge", "login", server.url, "--no-open"], input=token + "\n",
                           capture_output=True, text=True, timeout=60, check=False, env=env)
    assert login.returncode == 0, login.stderr
    printed = subprocess.run([sys.executable, "-m", "aibridge", "env", "claude-code"], capture_output=True, text=True,
                             timeout=60, check=False, env=env)
    assert f"export ANTHROPIC_API_KEY={token}" in printed.stdout, printed.stderr
    assert f"export ANTHROPIC_BASE_URL={server.url}/api/v2/aibridge/anthropic" in printed.stdout
    assert page.problems() == []


async def test_users_page_manages_users(server: ServerProcess, page: Page) -> None:
    dora = server.create_user("dora")
    server.create_user("dmitri")
    server.create_user("erin")
    await add_to_group(server.db, "dora", "data-science")
    await sign_in(page, server.url, server.admin_token, "admin")
    await page.click("#users-tab")
    await page.type("#users-search input[name=q]", "dora")
    await page.click("#users-search button[type=submit]")
    dora_row = "#users-table tr[data-username=dora]"
    await page.wait(f"document.querySelectorAll('#users-table tbody tr').length === 1 && "
                    f"!!document.querySelector({json.dumps(dora_row)})", "dora alone")
    assert "data-science" in await page.text(f"{dora_row} .groups")
    owner = Client(server.url, server.admin_token)

    # Role: at once for dora's cached token.
    assert (await Client(server.url, dora).get("/api/v2/users/me"))[1]["role"] == "member"
    await page.js(f"(() => {{ const s = document.querySelector({json.dumps(dora_row + ' select.role')}); "
                  "s.value = 'auditor'; s.dispatchEvent(new Event('change')); })()")
    await page.wait(f"document.querySelector({json.dumps(dora_row + ' select.role')}).value === 'auditor' && "
                    "document.querySelector('#users-view').getAttribute('aria-busy') === 'false'", "the new role")
    assert (await Client(server.url, dora).get("/api/v2/users/me"))[1]["role"] == "auditor"

    # Suspend: her token stops at once; activate: it works again.
    await page.click(f"{dora_row} button.suspend")
    await page.wait(f"!!document.querySelector({json.dumps(dora_row + ' button.activate')})", "suspended")
    status, body = await Client(server.url, dora).get("/api/v2/users/me")
    assert status == 403 and "suspended" in body["message"]
    await page.click(f"{dora_row} button.activate")
    await page.wait(f"!!document.querySelector({json.dumps(dora_row + ' button.suspend')})", "active again")
    assert (await Client(server.url, dora).get("/api/v2/users/me"))[0] == 200

    # Her tokens, in the side panel; revoking one there refuses it at once.
    await page.click(f"{dora_row} button.tokens")
    await page.wait("!document.querySelector('#detail').hidden && "
                    "document.querySelectorAll('#user-tokens-table tbody tr').length === 1", "dora's tokens")
    await page.click("#user-tokens-table button.revoke")
    await page.wait("document.querySelector('#user-tokens-table tbody').textContent.includes('revoked')", "revoked")
    status, body = await Client(server.url, dora).get("/api/v2/users/me")
    assert status == 403 and "revoked" in body["message"]
    await page.click("#detail-close")

    # Delete asks twice.
    await page.type("#users-search input[name=q]", "erin")
    await page.click("#users-search button[type=submit]")
    erin_row = "#users-table tr[data-username=erin]"
    await page.wait(f"!!document.querySelector({json.dumps(erin_row)}) && "
                    "document.querySelectorAll('#users-table tbody tr').length === 1", "erin alone")
    await page.click(f"{erin_row} button.delete")
    assert await page.text(f"{erin_row} button.delete") == "Confirm delete"
    assert (await owner.get("/api/v2/users/erin"))[0] == 200
    await page.click(f"{erin_row} button.delete")
    await page.wait("document.querySelectorAll('#users-table tbody tr').length === 0", "erin gone")
    assert (await owner.get("/api/v2/users/erin"))[0] == 404

    # The owner's own row cannot demote, suspend or delete itself.
    await page.type("#users-search input[name=q]", "admin")
    await page.click("#users-search button[type=submit]")
    admin_row = "#users-table tr[data-username=admin]"
    await page.wait(f"!!document.querySelector({json.dumps(admin_row)})", "the owner's row")
    assert await page.js(f"document.querySelector({json.dumps(admin_row + ' select.role')}).disabled") is True
    assert await page.js(f"document.querySelectorAll({json.dumps(admin_row + ' button.delete')}).length") == 0
    assert page.problems() == []
