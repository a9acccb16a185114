"""Usage and spend aggregated on the server over any period (issue 20, 3.7 and 3.8): tokens and
cost by user, model, provider, client and day; ``users/me`` reads the same numbers as ``spend``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.e2e import test_governance as governance
from tests.e2e.test_governance import SIMPLE_USAGE, Env, cost, message
from tests.harness import Client, wait_for

gov = governance.gov            # the same fixture: a server with a fake upstream, for this module


async def _spend(client: Client, query: str) -> dict[str, Any]:
    status, body = await client.get("/api/v2/aibridge/spend?" + query)
    assert status == 200, body
    result: dict[str, Any] = body
    return result


async def test_spend_rows_carry_tokens_by_every_grouping(gov: Env) -> None:
    token = gov.server.create_user("tally")
    tally = Client(gov.server.url, token)
    for _ in range(2):
        assert (await message(gov, token, "claude-haiku-4-5"))[0] == 200

    async def both() -> bool:
        rows = (await _spend(tally, "group_by=user"))["results"]
        return bool(rows) and rows[0]["requests"] == 2
    assert await wait_for(both)
    body = await _spend(gov.owner(), "group_by=user,provider,model,client,day")
    (row,) = [r for r in body["results"] if r["user"] == "tally"]
    assert row["provider"] == "anthropic" and row["model"] == "claude-haiku-4-5" and row["requests"] == 2
    assert row["day"] == dt.datetime.now(dt.UTC).strftime("%Y-%m-%d") and "client" in row
    assert (row["input_tokens"], row["output_tokens"]) == (2 * SIMPLE_USAGE[0], 2 * SIMPLE_USAGE[1])
    assert row["cache_read_input_tokens"] == row["cache_write_input_tokens"] == 0
    assert row["cost_usd"] == pytest.approx(2 * cost((1.0, 5.0), SIMPLE_USAGE))
    whole = await _spend(tally, "group_by=")                                  # no grouping: one total row
    assert [r["input_tokens"] for r in whole["results"]] == [2 * SIMPLE_USAGE[0]]
    status, refused = await tally.get("/api/v2/aibridge/spend?group_by=team")
    assert status == 400 and "group_by" in refused["message"]


async def test_users_me_spent_equals_spend_for_the_same_period(gov: Env) -> None:
    """A budget set after the user spent: ``users/me`` must not report less than the export."""
    token = gov.server.create_user("latecomer")
    late = Client(gov.server.url, token)
    assert (await message(gov, token, "claude-haiku-4-5"))[0] == 200

    async def recorded() -> bool:
        return bool((await _spend(late, "group_by=user"))["total_usd"] > 0)
    assert await wait_for(recorded)
    status, _ = await gov.owner().request("PUT", "/api/v2/aibridge/budgets/user:latecomer",
                                          {"period": "month", "limit_usd": 50})
    assert status == 200
    _, me = await late.get("/api/v2/users/me")
    start = dt.datetime.now(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    since = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    spend = await _spend(late, f"group_by=user&since={since}&until={me['budget']['resets_at']}")
    assert me["budget"]["spent_usd"] == spend["total_usd"] > 0
