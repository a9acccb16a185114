"""The UI's Audit tab in a real headless Chromium (the browser set-up is test_web's): owners and
auditors see the audit log and filter it; members do not get the tab (issue 22)."""

from __future__ import annotations

from tests.e2e import test_web as web
from tests.e2e.conftest import Bridge
from tests.harness import Client

devtools = web.devtools         # the same fixtures (one browser per module)
page = web.page

AUDIT_ROWS = "#audit-table tbody tr"


async def test_owner_reads_and_filters_the_audit_log_members_get_no_tab(bridge: Bridge, page: web.Page) -> None:
    owner = bridge.owner()
    status, _ = await owner.request("PUT", "/api/v2/aibridge/prices/ui-audit-model", {"input": 1, "output": 2})
    assert status == 200
    status, _ = await Client(bridge.server.url, bridge.token).request(
        "PUT", "/api/v2/aibridge/prices/ui-audit-model", {"input": 0, "output": 0})
    assert status == 403
    await web.sign_in(page, bridge.server.url, bridge.server.admin_token, "admin")
    await page.click("#tabs a[data-view=audit]")
    await page.wait(f"document.querySelectorAll({AUDIT_ROWS!r}).length >= 2", "audit rows")
    rows = await page.texts(AUDIT_ROWS)
    assert "alice" in rows[0] and "ui-audit-model" in rows[0] and "403" in rows[0]
    assert "admin" in rows[1] and "write" in rows[1] and "price" in rows[1] and "200" in rows[1]
    assert 'output: null → 2' in rows[1]
    await page.type("#audit-filters input[name=username]", "alice")
    await page.click("#audit-filters button[type=submit]")
    await page.wait(f"[...document.querySelectorAll({AUDIT_ROWS!r})].every(r => r.textContent.includes('alice'))",
                    "only alice's rows")
    await page.screenshot("aibridge-ui-audit.png")
    assert not page.problems()
    await page.click("#sign-out")
    await web.sign_in(page, bridge.server.url, bridge.token, "alice")
    assert await page.js("document.querySelector('#audit-tab').hidden")
