"""Governance end to end: cost, budgets under concurrency, model rules, spend export (issue 13)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest

from tests.e2e.conftest import bridge_env
from tests.e2e.records import latest
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess, run_cli, wait_for

MESSAGES = "/api/v2/aibridge/anthropic/v1/messages"
SIMPLE_USAGE = (23, 71)        # messages/simple: input, output tokens
SLOW_USAGE = (12, 88)          # messages/slow


@dataclass
class Env:
    server: ServerProcess
    fake: FakeUpstream

    def owner(self) -> Client:
        return Client(self.server.url, self.server.admin_token)

    def cli_env(self, token: str) -> dict[str, str]:
        return {**self.server.env, "CODER_URL": self.server.url, "CODER_SESSION_TOKEN": token}

    def cli(self, token: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), self.cli_env(token))


@pytest.fixture(scope="module")
async def gov(module_database: Database) -> AsyncIterator[Env]:
    fake = FakeUpstream()
    await fake.start()
    server = await ServerProcess(module_database, env={
        **bridge_env(fake), "CODER_PROMETHEUS_ENABLE": "true", "CODER_PROMETHEUS_ADDRESS": "127.0.0.1:0"}).start()
    try:
        yield Env(server, fake)
    finally:
        server.stop()
        await fake.stop()


async def message(env: Env, token: str, model: str, *, max_tokens: int = 100,
                  timeout: float = 60) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, session.post(
            env.server.url + MESSAGES, data=_body(model, max_tokens),
            headers={"x-api-key": token, "anthropic-version": "2023-06-01",
                     "Content-Type": "application/json"}) as resp:
        return resp.status, orjson.loads(await resp.read())


async def metrics_text(env: Env) -> str:
    async with aiohttp.ClientSession() as session, session.get(
            env.server.url + "/metrics", headers={"Coder-Session-Token": env.server.admin_token}) as resp:
        return await resp.text()


def cost(price: tuple[float, float], usage: tuple[int, int]) -> float:
    return (usage[0] * price[0] + usage[1] * price[1]) / 1_000_000


# ---------------------------------------------------------------- cost

async def test_cost_is_stored_exported_and_counted(gov: Env) -> None:
    token = gov.server.create_user("cora")
    member = Client(gov.server.url, token)
    client = anthropic.AsyncAnthropic(base_url=gov.server.url + "/api/v2/aibridge/anthropic", api_key=token)
    await client.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=100,
                                 messages=[{"role": "user", "content": "hi"}])
    priced = await latest(member, "initiator:me")
    assert priced["cost_usd"] == pytest.approx(cost((3.0, 15.0), SIMPLE_USAGE))     # shipped Sonnet 4.5 price
    assert priced["requested_model"] == priced["model"] == "claude-sonnet-4-5-20250929"

    await client.messages.create(model="mystery-model-1", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    unpriced = await latest(member, "initiator:me", after={priced["id"]})
    assert unpriced["model"] == "mystery-model-1" and unpriced["cost_usd"] is None

    text = await metrics_text(gov)
    line = next(x for x in text.splitlines() if x.startswith("coder_aibridged_cost_total{")
                and 'model="claude-sonnet-4-5-20250929"' in x)
    assert float(line.rsplit(" ", 1)[1]) >= cost((3.0, 15.0), SIMPLE_USAGE) * 0.999
    assert 'model="mystery-model-1"' not in "\n".join(x for x in text.splitlines() if "cost_total" in x)


async def test_prices_rest_roles_and_cli(gov: Env) -> None:
    owner = gov.owner()
    member = Client(gov.server.url, gov.server.create_user("pat"))
    auditor = Client(gov.server.url, gov.server.create_user("audrey", "auditor"))
    status, body = await auditor.get("/api/v2/aibridge/prices")
    assert status == 200
    shipped = {p["model"]: p for p in body["prices"]}
    assert shipped["claude-opus-4-5*"]["source"] == "default" and shipped["gpt-5-mini*"]["output"] == 2.0
    assert (await member.get("/api/v2/aibridge/prices"))[0] == 403
    assert (await member.request("PUT", "/api/v2/aibridge/prices/x*", {"input": 1, "output": 1}))[0] == 403
    assert (await auditor.request("PUT", "/api/v2/aibridge/prices/x*", {"input": 1, "output": 1}))[0] == 403
    status, body = await owner.request("PUT", "/api/v2/aibridge/prices/x*", {"input": -1, "output": 1})
    assert status == 400 and "input must be a non-negative number" in body["message"]
    status, body = await owner.request("PUT", "/api/v2/aibridge/prices/x*", {"input": 1})
    assert status == 400 and "output is required" in body["message"]

    done = gov.cli(gov.server.admin_token, "prices", "set", "house-model-*", "--input", "2", "--output", "4",
                   "--cache-read", "0.5")
    assert done.returncode == 0, done.stderr
    listed = gov.cli(gov.server.admin_token, "prices", "list")
    row = next(x for x in listed.stdout.splitlines() if x.startswith("house-model-*"))
    assert row.split()[1:] == ["2", "4", "0.5", "2", "owner"]
    refused = gov.cli(member.token, "prices", "set", "house-model-*", "--input", "1", "--output", "1")
    assert refused.returncode == 2 and "403" in refused.stderr

    status, _ = await member.post("/api/v2/aibridge/openai/v1/chat/completions", raw=orjson.dumps(
        {"model": "house-model-7", "messages": [{"role": "user", "content": "hi"}]}),
        headers={"Authorization": f"Bearer {member.token}"})
    assert status == 200
    found = await latest(member, "initiator:me")
    assert found["cost_usd"] == pytest.approx(cost((2.0, 4.0), (14, 22)))    # chat/simple usage
    assert (await owner.request("DELETE", "/api/v2/aibridge/prices/house-model-*"))[0] == 204
    assert (await owner.request("DELETE", "/api/v2/aibridge/prices/house-model-*"))[0] == 404


# ---------------------------------------------------------------- budgets

async def test_budget_holds_under_concurrency(gov: Env) -> None:
    """The issue's acceptance: a member at the edge of a $5 monthly budget sends 50 concurrent requests."""
    owner = gov.owner()
    token = gov.server.create_user("edge")
    edge = Client(gov.server.url, token)
    # A dear model to reach the edge in one request, and a cheap one for the burst.
    big = 4.99 / sum(SIMPLE_USAGE) * 1_000_000
    for model, price in (("claude-budget-big*", big), ("claude-budget-small*", 200.0)):
        assert (await owner.request("PUT", f"/api/v2/aibridge/prices/{model}",
                                    {"input": price, "output": price}))[0] == 200
    done = gov.cli(gov.server.admin_token, "budgets", "set", "--role", "member", "--period", "month",
                   "--limit-usd", "5")
    assert done.returncode == 0, done.stderr
    try:
        await _at_the_edge(gov, token, edge)
    finally:
        assert (await owner.request("DELETE", "/api/v2/aibridge/budgets/role:member"))[0] == 204


async def _at_the_edge(gov: Env, token: str, edge: Client) -> None:

    status, body = await edge.get("/api/v2/users/me")
    assert body["budget"]["limit_usd"] == 5 and body["budget"]["spent_usd"] == 0
    assert body["budget"]["period"] == "month"
    today = dt.datetime.now(dt.UTC)
    next_month = (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    assert body["budget"]["resets_at"] == next_month.strftime("%Y-%m-01T00:00:00Z")

    assert (await message(gov, token, "claude-budget-big"))[0] == 200
    spent = await wait_for(lambda: _spent(edge, 4.99))
    assert spent == pytest.approx(4.99)
    assert await _logged(gov, "user edge reached 85% of the monthly budget")

    upstream_before = len(gov.fake.requests_to("/v1/messages"))
    results = await asyncio.gather(*(message(gov, token, "claude-budget-small-scenario-slow") for _ in range(50)))
    admitted = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] != 200]
    assert len(admitted) == 1, [r[0] for r in results]
    assert {r[0] for r in refused} == {403}
    error = refused[0][1]
    assert error["type"] == "error" and error["error"]["type"] == "permission_error"
    assert "budget nearly used: $4.99 spent" in error["error"]["message"]
    assert next_month.strftime("%Y-%m-01T00:00:00Z") in error["error"]["message"]
    assert len(gov.fake.requests_to("/v1/messages")) == upstream_before + 1     # refused before any upstream call

    final = await wait_for(lambda: _spent(edge, 5.0))
    # The documented bound: one reservation (here the slow request's estimate, ~$0.03) beyond the limit.
    reservation = ((len(_body("claude-budget-small-scenario-slow")) + 2) // 3 + 100) * 200.0 / 1_000_000
    assert final - 5.0 <= reservation
    assert final == pytest.approx(4.99 + cost((200.0, 200.0), SLOW_USAGE))

    status, error_body = await message(gov, token, "claude-budget-small")
    assert status == 403 and "budget exceeded: $5.01 spent of the member role's $5.00 monthly budget" in \
        error_body["error"]["message"]
    assert await _logged(gov, "user edge reached 100% of the monthly budget")
    text = await metrics_text(gov)
    assert 'coder_aibridged_budget_rejections_total{reason="budget"} 50.0' in text
    assert 'coder_aibridged_budget_threshold_crossings_total{threshold="85"} 1.0' in text
    assert 'coder_aibridged_budget_threshold_crossings_total{threshold="100"} 1.0' in text

    # The ledger and the records agree.
    async def both_recorded() -> Any:
        _, found = await edge.get("/api/v2/aibridge/spend?group_by=user")
        return found if found["results"] and found["results"][0]["requests"] == 2 else None

    spend = await wait_for(both_recorded)
    assert spend and spend["results"] == [{
        "user": "edge", "cost_usd": pytest.approx(final), "requests": 2, "unpriced_requests": 0,
        "input_tokens": SIMPLE_USAGE[0] + SLOW_USAGE[0], "output_tokens": SIMPLE_USAGE[1] + SLOW_USAGE[1],
        "cache_read_input_tokens": 0, "cache_write_input_tokens": 0}]


async def _logged(env: Env, text: str) -> bool:
    async def check() -> bool:
        return text in env.server.output()
    return bool(await wait_for(check))


def _body(model: str, max_tokens: int = 100) -> bytes:
    return orjson.dumps({"model": model, "max_tokens": max_tokens,
                         "messages": [{"role": "user", "content": "how long should green tea steep?"}]})


async def _spent(client: Client, at_least: float) -> float | None:
    _, body = await client.get("/api/v2/users/me")
    spent: float = body["budget"]["spent_usd"]
    return spent if spent >= at_least - 1e-6 else None


async def test_role_budget_user_override_and_rest_checks(gov: Env) -> None:
    owner = gov.owner()
    auditor = Client(gov.server.url, gov.server.create_user("avery", "auditor"))
    member = Client(gov.server.url, gov.server.create_user("mia"))
    status, body = await owner.request("PUT", "/api/v2/aibridge/budgets/role:auditor",
                                       {"period": "day", "limit_usd": 0})
    assert status == 200 and body["subject"] == "auditor"
    status, body = await auditor.post("/api/v2/aibridge/anthropic/v1/messages", raw=_body("claude-sonnet-4-5"),
                                      headers={"x-api-key": auditor.token})
    assert status == 403 and "budget exceeded: $0.00 spent of the auditor role's $0.00 daily budget" in \
        body["error"]["message"]
    _, me = await auditor.get("/api/v2/users/me")
    assert me["budget"]["period"] == "day" and me["budget"]["limit_usd"] == 0
    assert (await owner.request("PUT", "/api/v2/aibridge/budgets/user:avery",
                                {"period": "week", "limit_usd": 10}))[0] == 200
    status, _ = await auditor.post("/api/v2/aibridge/anthropic/v1/messages", raw=_body("claude-sonnet-4-5"),
                                   headers={"x-api-key": auditor.token})
    assert status == 200                                        # a user's own budget beats its role's
    _, me = await auditor.get("/api/v2/users/me")
    assert me["budget"]["period"] == "week"
    assert (await Client(gov.server.url, gov.server.create_user("nobudget")).get("/api/v2/users/me"))[1][
        "budget"] is None

    status, listed = await auditor.get("/api/v2/aibridge/budgets")
    assert status == 200
    assert {"scope": "user", "subject": "avery", "period": "week", "limit_usd": 10, "source": "owner"} in \
        listed["budgets"]
    assert (await member.get("/api/v2/aibridge/budgets"))[0] == 403
    assert (await auditor.request("PUT", "/api/v2/aibridge/budgets/role:member",
                                  {"period": "day", "limit_usd": 1}))[0] == 403
    assert (await owner.request("PUT", "/api/v2/aibridge/budgets/user:ghost",
                                {"period": "day", "limit_usd": 1}))[0] == 404
    status, body = await owner.request("PUT", "/api/v2/aibridge/budgets/role:wizard", {"period": "day",
                                                                                      "limit_usd": 1})
    assert status == 400 and "unknown role" in body["message"]
    status, body = await owner.request("PUT", "/api/v2/aibridge/budgets/role:member", {"period": "year",
                                                                                      "limit_usd": 1})
    assert status == 400 and "period must be one of day, week, month" in body["message"]
    assert (await owner.request("DELETE", "/api/v2/aibridge/budgets/role:auditor"))[0] == 204
    done = gov.cli(gov.server.admin_token, "budgets", "delete", "--user", "avery")
    assert done.returncode == 0, done.stderr
    listed_cli = gov.cli(gov.server.admin_token, "budgets", "list")
    assert "user:avery" not in listed_cli.stdout and "role:auditor" not in listed_cli.stdout


# ---------------------------------------------------------------- model rules

async def test_model_rules_allow_alias_and_model_list(gov: Env) -> None:
    owner = gov.owner()
    token = gov.server.create_user("sonny")
    sonny = Client(gov.server.url, token)
    boss = gov.server.create_user("boss")
    try:
        done = gov.cli(gov.server.admin_token, "models", "allow", "--role", "member", "claude-sonnet-*")
        assert done.returncode == 0, done.stderr
        done = gov.cli(gov.server.admin_token, "models", "allow", "--user", "boss", "*")
        assert done.returncode == 0, done.stderr
        done = gov.cli(gov.server.admin_token, "models", "alias", "sonnet", "claude-sonnet-4-5-20250929",
                       "--provider", "anthropic")
        assert done.returncode == 0, done.stderr

        before = len(gov.fake.requests_to("/v1/messages"))
        status, body = await message(gov, token, "claude-opus-4-5")
        assert status == 403 and body["error"]["type"] == "permission_error"
        assert body["error"]["message"].startswith(
            "model 'claude-opus-4-5' is not allowed for you; allowed models: claude-sonnet-*")
        assert len(gov.fake.requests_to("/v1/messages")) == before        # never sent upstream
        status, body = await sonny.post("/api/v2/aibridge/openai/v1/chat/completions", raw=orjson.dumps(
            {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}),
            headers={"Authorization": f"Bearer {token}"})
        assert status == 403 and body["error"]["type"] == "permission_error"      # OpenAI's error shape
        assert (await message(gov, boss, "claude-opus-4-5"))[0] == 200             # a user's rule beats its role's

        assert (await message(gov, token, "sonnet"))[0] == 200                     # the alias is allowed
        assert gov.fake.requests_to("/v1/messages")[-1].json["model"] == "claude-sonnet-4-5-20250929"
        found = await latest(sonny, "initiator:me")
        assert found["model"] == "claude-sonnet-4-5-20250929" and found["requested_model"] == "sonnet"
        assert found["cost_usd"] == pytest.approx(cost((3.0, 15.0), SIMPLE_USAGE))

        async with aiohttp.ClientSession() as session:
            async with session.get(gov.server.url + "/api/v2/aibridge/anthropic/v1/models",
                                   headers={"x-api-key": token}) as resp:
                listed = orjson.loads(await resp.read())
            assert [m["id"] for m in listed["data"]] == ["claude-sonnet-4-5-20250929"]
            assert listed["first_id"] == listed["last_id"] == "claude-sonnet-4-5-20250929"
            async with session.get(gov.server.url + "/api/v2/aibridge/openai/v1/models",
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200 and orjson.loads(await resp.read())["data"] == []
            async with session.get(gov.server.url + "/api/v2/aibridge/anthropic/v1/models",
                                   headers={"x-api-key": gov.server.admin_token}) as resp:
                assert len(orjson.loads(await resp.read())["data"]) == 3           # owners have no rule
            async with session.get(gov.server.url + "/api/v2/aibridge/openai/v1/models",
                                   headers={"Authorization": f"Bearer {gov.server.admin_token}"}) as resp:
                relayed = await resp.read()
            async with session.get(gov.fake.url + "/v1/models",
                                   headers={"Authorization": "Bearer sk-openai-central"}) as resp:
                assert relayed == await resp.read()                               # unrestricted: byte for byte

        status, rules = await owner.get("/api/v2/aibridge/model-rules")
        assert status == 200
        assert {"scope": "role", "subject": "member", "models": ["claude-sonnet-*"]} in rules["allow"]
        assert {"from": "sonnet", "to": "claude-sonnet-4-5-20250929", "provider": "anthropic"} in rules["aliases"]
        assert (await sonny.get("/api/v2/aibridge/model-rules"))[0] == 403
        assert (await sonny.request("PUT", "/api/v2/aibridge/model-rules", {"allow": []}))[0] == 403
        status, body = await owner.request("PUT", "/api/v2/aibridge/model-rules",
                                           {"allow": [{"role": "member", "models": "claude-*"}]})
        assert status == 400 and "models must be a list" in body["message"]
        text = await metrics_text(gov)
        assert 'coder_aibridged_budget_rejections_total{reason="model_not_allowed"} 2.0' in text
    finally:
        status, _ = await owner.request("PUT", "/api/v2/aibridge/model-rules", {
            "allow": [{"role": "member", "models": None}, {"user": "boss", "models": None}],
            "aliases": [{"from": "sonnet", "to": None, "provider": "anthropic"}]})
        assert status == 200
    assert (await message(gov, token, "claude-opus-4-5"))[0] == 200


# ---------------------------------------------------------------- spend export

async def test_spend_export_json_csv_and_cli(gov: Env) -> None:
    token = gov.server.create_user("spender")
    spender = Client(gov.server.url, token)
    for _ in range(2):
        assert (await message(gov, token, "claude-haiku-4-5"))[0] == 200
    await wait_for(lambda: _count(spender, 2))
    status, body = await gov.owner().get("/api/v2/aibridge/spend?group_by=user,model,day")
    assert status == 200 and body["group_by"] == ["user", "model", "day"]
    row = next(r for r in body["results"] if r["user"] == "spender")
    assert row == {"user": "spender", "model": "claude-haiku-4-5", "day": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
                   "cost_usd": pytest.approx(2 * cost((1.0, 5.0), SIMPLE_USAGE)), "requests": 2,
                   "unpriced_requests": 0, "input_tokens": 2 * SIMPLE_USAGE[0], "output_tokens": 2 * SIMPLE_USAGE[1],
                   "cache_read_input_tokens": 0, "cache_write_input_tokens": 0}
    status, own = await spender.get("/api/v2/aibridge/spend?group_by=user")
    assert status == 200 and [r["user"] for r in own["results"]] == ["spender"]     # members see their own

    async with aiohttp.ClientSession() as session, session.get(
            gov.server.url + "/api/v2/aibridge/spend?group_by=user,model&format=csv",
            headers={"Coder-Session-Token": gov.server.admin_token}) as resp:
        assert resp.status == 200 and resp.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
    mine = next(r for r in rows if r["user"] == "spender")
    assert mine["model"] == "claude-haiku-4-5" and float(mine["cost_usd"]) == pytest.approx(row["cost_usd"], abs=1e-6)

    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, empty = await spender.get(f"/api/v2/aibridge/spend?since={future}")
    assert status == 200 and empty["results"] == [] and empty["total_usd"] == 0
    assert (await spender.get("/api/v2/aibridge/spend?group_by=team"))[0] == 400
    assert (await spender.get("/api/v2/aibridge/spend?format=xml"))[0] == 400
    assert (await spender.get("/api/v2/aibridge/spend?since=yesterday"))[0] == 400

    done = gov.cli(token, "spend", "--group-by", "model", "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == ("model,cost_usd,requests,unpriced_requests,input_tokens,output_tokens,"
                                           "cache_read_input_tokens,cache_write_input_tokens")
    assert done.stdout.splitlines()[1].startswith("claude-haiku-4-5,")


async def _count(client: Client, n: int) -> bool:
    _, body = await client.get("/api/v2/aibridge/interceptions?q=initiator:me")
    return bool(body["count"] >= n)


async def test_yaml_rules_and_a_bad_one(database: Database) -> None:
    fake = FakeUpstream()
    await fake.start()
    config = database.data_dir / "aibridge.yaml"
    config.write_text("""
aibridge:
  prices:
    yaml-model-*: {input: 1, output: 2}
  budgets:
    - {role: member, period: week, limit_usd: 7.5}
  model_rules:
    allow:
      - {role: member, models: ["yaml-model-*"]}
    aliases:
      - {from: fast, to: yaml-model-fast}
""")
    server = await ServerProcess(database, env={**bridge_env(fake), "CODER_CONFIG_PATH": str(config)}).start()
    try:
        token = server.create_user("yara")
        env = Env(server, fake)
        status, _ = await message(env, token, "fast")
        assert status == 200 and fake.requests_to("/v1/messages")[-1].json["model"] == "yaml-model-fast"
        assert (await message(env, token, "claude-sonnet-4-5"))[0] == 403
        member = Client(server.url, token)
        found = await latest(member, "initiator:me")
        assert found["cost_usd"] == pytest.approx(cost((1.0, 2.0), SIMPLE_USAGE))
        _, me = await member.get("/api/v2/users/me")
        assert me["budget"]["limit_usd"] == 7.5 and me["budget"]["period"] == "week"
        _, prices = await env.owner().get("/api/v2/aibridge/prices")
        assert {"model": "yaml-model-*", "input": 1.0, "output": 2.0, "cache_read": 1.0, "cache_write": 1.0,
                "source": "config"} in prices["prices"]
    finally:
        server.stop()
        await fake.stop()
    config.write_text("aibridge:\n  budgets:\n    - {role: member, period: fortnight, limit_usd: 1}\n")
    bad = ServerProcess(database, env={**bridge_env(fake), "CODER_CONFIG_PATH": str(config)})
    with pytest.raises(RuntimeError, match="exited with 2"):
        await bad.start()
    assert bad.output().strip().splitlines()[-1] == (
        "error: config aibridge.budgets[0]: period must be one of day, week, month, got 'fortnight'")
