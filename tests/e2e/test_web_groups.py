"""The web UI's Groups page (owners) and the Cost tab's spend per group, in a real browser."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import Bridge
from tests.e2e.test_governance import Env, message
from tests.e2e.test_web import Page, devtools, page, sign_in
from tests.harness import Client, wait_for

__all__ = ["devtools", "page"]      # the browser fixtures, shared with test_web.py


async def test_owner_manages_a_group_and_sees_cost_per_group(bridge: Bridge, page: Page) -> None:
    owner = bridge.owner()
    await sign_in(page, bridge.server.url, bridge.server.admin_token, "admin")
    await page.click("#groups-tab")
    await page.type("#group-create input[name=name]", "web-team")
    await page.type("#group-create input[name=display_name]", "Web team")
    await page.click("#group-create button[type=submit]")
    await page.wait("document.querySelector('#group-detail h2')?.textContent === 'web-team'", "the new group")
    await page.type("#group-create input[name=name]", "web-team")        # taken: the refusal stays shown
    await page.click("#group-create button[type=submit]")
    await page.wait("!document.querySelector('#banner').hidden && "
                    "document.querySelector('#banner-text').textContent.includes('already exists')", "the refusal")
    await page.wait("document.querySelector('#groups-view').getAttribute('aria-busy') !== 'true'", "the reload")
    await asyncio.sleep(0.3)
    assert await page.js("!document.querySelector('#banner').hidden"), "the reload hid the refusal"
    await page.type("#group-add input[name=user]", "alice")
    await page.click("#group-add button[type=submit]")
    await page.wait("document.querySelector('#group-detail .members')?.textContent.includes('alice')", "alice added")
    status, body = await owner.get("/api/v2/groups/web-team")
    assert status == 200 and [m["username"] for m in body["members"]] == ["alice"]
    assert body["display_name"] == "Web team"

    await page.type("#group-rename input[name=name]", "web-crew")
    await page.click("#group-rename button[type=submit]")
    await page.wait("document.querySelector('#group-detail h2')?.textContent === 'web-crew'", "the rename")
    assert await page.texts("#groups-table tbody td:first-child") == ["web-crew"]

    # Spend per group on the Cost tab (alice's request counts under her group).
    assert (await message(Env(bridge.server, bridge.fake), bridge.token, "claude-haiku-4-5"))[0] == 200

    async def recorded() -> bool:
        _, found = await owner.get("/api/v2/aibridge/spend?group_by=group")
        return any(r["group"] == "web-crew" for r in found["results"])
    assert await wait_for(recorded)
    await page.click("#tabs a[data-view=cost]")
    await page.wait("document.querySelector('#cost-groups')?.textContent.includes('web-crew')", "cost per group")

    await page.click("#groups-tab")
    await page.click("#groups-table tbody tr")
    await page.click("#group-detail button[data-remove=alice]")
    await page.wait("document.querySelector('#group-detail .members')?.children.length === 0", "alice removed")
    await page.click("#group-delete")
    await page.wait("document.querySelector('#groups-list')?.textContent.includes('No groups yet.')", "deleted")
    assert (await owner.get("/api/v2/groups/web-crew"))[0] == 404
    assert not page.problems()


async def test_the_groups_tab_is_for_owners(bridge: Bridge, page: Page) -> None:
    await sign_in(page, bridge.server.url, bridge.token, "alice")
    assert await page.js("document.querySelector('#groups-tab').hidden")
    assert (await Client(bridge.server.url, bridge.token).post("/api/v2/groups", {"name": "nope"}))[0] == 403
