"""The web UI's Providers page (issue 23 §3) in a real headless Chromium (the browser set-up is test_web's).

Owners see every provider with its status (and why one cannot be used), create one, disable it, change its
keys and delete it; the configured providers are shown read-only with where they are defined. Auditors
read the page without any edit control; members get no tab.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from aibridge.store import providers as provider_store
from aibridge.store.db import create_engine
from aibridge.store.providers import NewKey
from aibridge.store.secrets import SecretBox
from tests.e2e import test_web as web
from tests.e2e.conftest import bridge_env
from tests.e2e.test_runtime_providers import SECOND_KEY, TEAM_KEY, chat
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess
from tests.unit.test_retention import database_url

devtools = web.devtools         # the same fixtures (one browser per module)
page = web.page

ROW = "#providers-table tbody tr[data-provider={}]"
SECRETS_KEY = base64.b64encode(os.urandom(32)).decode()


@dataclass
class Env:
    server: ServerProcess
    team: FakeUpstream        # the created provider's upstream: it accepts only its key
    auditor: str
    member: str

    def owner(self) -> Client:
        return Client(self.server.url, self.server.admin_token)

    async def chat(self, provider: str) -> int:
        return (await chat(self.server, provider, self.member))[0]


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    """SQLite only: the page is a client of the REST API (the API's own tests run on both databases)."""
    async with Database("sqlite") as db, FakeUpstream() as central, FakeUpstream(openai_key=TEAM_KEY) as team:
        server = await ServerProcess(db, env={**bridge_env(central), "CODER_AIBRIDGE_SECRETS_KEY": SECRETS_KEY}).start()
        try:
            yield Env(server, team, server.create_user("wpaud", "auditor"), server.create_user("wpmember"))
        finally:
            server.stop()


async def _broken_provider(env: Env) -> None:
    """A provider whose key was encrypted with another secrets key (a replica without the shared key made it),
    written to the database as the CLI's direct commands write it; the server picks it up within a second."""
    engine = create_engine(database_url(env.server.db))
    other = SecretBox([base64.urlsafe_b64encode(os.urandom(32))])
    try:
        async with engine.begin() as conn:
            await provider_store.create_provider(
                conn, name="undecryptable", type_="openai", display_name="", enabled=True, base_url="", settings={},
                keys=[NewKey(other.encrypt(TEAM_KEY), "sk-…WXYZ")])
    finally:
        await engine.dispose()


def _row(name: str) -> str:
    return ROW.format(json.dumps(name))


async def _row_text(page: web.Page, name: str, fragment: str, what: str) -> None:
    await page.wait(f"(document.querySelector({json.dumps(_row(name))}) || {{}}).textContent?.includes("
                    f"{json.dumps(fragment)}) && document.querySelector('#providers-view')"
                    ".getAttribute('aria-busy') === 'false'", what)


async def test_owner_creates_disables_rekeys_and_deletes_a_provider(env: Env, page: web.Page) -> None:
    await _broken_provider(env)
    await web.sign_in(page, env.server.url, env.server.admin_token, "admin")
    await page.click("#providers-tab")
    # The configured ones, read-only with where they are defined; one that cannot be used, with why.
    await _row_text(page, "openai", "environment or YAML", "the configured openai provider")
    config_row = await page.text(_row("openai"))
    assert "config" in config_row and "enabled" in config_row and "sk-…tral" in config_row
    assert await page.js(f"document.querySelectorAll({json.dumps(_row('openai') + ' button')}).length") == 0
    await _row_text(page, "undecryptable", "cannot decrypt", "the error and its reason")

    await page.type("#provider-create input[name=name]", "web-team")
    await page.type("#provider-create input[name=base_url]", f"{env.team.url}/v1/")
    await page.type("#provider-create input[name=api_key]", TEAM_KEY)
    await page.type("#provider-create input[name=display_name]", "Web team")
    await page.click("#provider-create button[type=submit]")
    await _row_text(page, "web-team", "sk-…WXYZ", "the new provider")
    row = await page.text(_row("web-team"))
    assert "api" in row and "enabled" in row and "Web team" in row and TEAM_KEY not in row
    assert await page.js("document.querySelector('#provider-create input[name=api_key]').value") == ""
    assert await env.chat("web-team") == 200                   # served at once, with its key

    await page.click(_row("web-team") + " button.disable")
    await _row_text(page, "web-team", "disabled", "the provider disabled")
    assert (await env.owner().get("/api/v2/ai/providers/web-team"))[1]["status"] == "disabled"
    assert await env.chat("web-team") == 403

    # Keys: add the second, remove the first; the upstream then sees the second.
    await page.type(_row("web-team") + " form.key-add input", SECOND_KEY)
    await page.click(_row("web-team") + " form.key-add button")
    await _row_text(page, "web-team", "sk-…abcd", "the added key")
    await page.click(_row("web-team") + ' button[data-remove-key="sk-…WXYZ"]')
    await page.wait(f"!document.querySelector({json.dumps(_row('web-team'))}).textContent.includes('sk-…WXYZ')",
                    "the removed key")
    await page.click(_row("web-team") + " button.enable")
    await _row_text(page, "web-team", "Disable", "the provider enabled again")
    env.team.openai_key = SECOND_KEY
    assert await env.chat("web-team") == 200
    assert env.team.requests[-1].headers["Authorization"] == f"Bearer {SECOND_KEY}"

    # Removing the last key is refused by the server: the banner says why, the key stays.
    await page.click(_row("web-team") + ' button[data-remove-key="sk-…abcd"]')
    await page.wait("!document.querySelector('#banner').hidden && "
                    "document.querySelector('#banner-text').textContent.includes('needs an API key')", "the refusal")
    await page.screenshot("aibridge-ui-providers.png")

    await page.click(_row("web-team") + " button.delete")
    await page.click(_row("web-team") + " button.delete")        # "Confirm delete"
    await page.wait(f"!document.querySelector({json.dumps(_row('web-team'))})", "the provider deleted")
    assert (await env.owner().get("/api/v2/ai/providers/web-team"))[0] == 404
    assert TEAM_KEY not in await page.js("document.body.innerText")
    assert not page.problems()


async def test_auditors_read_without_edit_controls_members_get_no_tab(env: Env, page: web.Page) -> None:
    await web.sign_in(page, env.server.url, env.auditor, "wpaud")
    await page.click("#providers-tab")
    await _row_text(page, "anthropic", "sk-ant-…", "the providers")
    assert await page.js("document.querySelector('#provider-create').hidden")
    assert await page.js("document.querySelectorAll('#providers-table button, #providers-table form').length") == 0
    assert not page.problems()
    await page.click("#sign-out")
    await web.sign_in(page, env.server.url, env.member, "wpmember")
    assert await page.js("document.querySelector('#providers-tab').hidden")
