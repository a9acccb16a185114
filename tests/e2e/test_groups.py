"""Groups end to end (issue 22): management through REST and the CLI with role checks, a group's
model rule, budget precedence (user > highest group > role) shown in ``users/me``, Coder's budget
routes, spend by group, and the budget bound with groups on one server and on two replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.conftest import bridge_env
from tests.e2e.test_governance import SIMPLE_USAGE, SLOW_USAGE, Env, _body, cost, message
from tests.e2e.test_replicas import start_replicas
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess, wait_for


@pytest.fixture(scope="module")
async def env(module_database: Database) -> AsyncIterator[Env]:
    fake = FakeUpstream()
    await fake.start()
    server = await ServerProcess(module_database, env=bridge_env(fake)).start()
    try:
        yield Env(server, fake)
    finally:
        server.stop()
        await fake.stop()


async def _me(client: Client) -> dict[str, Any]:
    status, body = await client.get("/api/v2/users/me")
    assert status == 200, body
    found: dict[str, Any] = body
    return found


# ---------------------------------------------------------------- management

async def test_groups_rest_and_roles(env: Env) -> None:
    owner = env.owner()
    auditor = Client(env.server.url, env.server.create_user("gaudit", "auditor"))
    ann = Client(env.server.url, env.server.create_user("gann"))
    bob = Client(env.server.url, env.server.create_user("gbob"))
    _, bob_user = await owner.get("/api/v2/users/gbob")

    status, made = await owner.post("/api/v2/groups", {"name": "platform", "display_name": "Platform team"})
    assert status == 201 and made["name"] == "platform" and made["members"] == [] and made["source"] == "manual"
    status, body = await owner.post("/api/v2/groups", {"name": "platform"})
    assert status == 409 and "already exists" in body["message"]
    status, body = await owner.post("/api/v2/groups", {"name": "no spaces"})
    assert status == 400 and "invalid group name" in body["message"]
    assert (await ann.post("/api/v2/groups", {"name": "mine"}))[0] == 403
    assert (await auditor.post("/api/v2/groups", {"name": "mine"}))[0] == 403
    assert (await owner.post("/api/v2/groups", {"name": "data"}))[0] == 201

    # Members by username or id, together with a new display name.
    status, body = await owner.request("PATCH", "/api/v2/groups/platform",
                                       {"add_users": ["gann", bob_user["id"]], "display_name": "Platform"})
    assert status == 200, body
    assert [m["username"] for m in body["members"]] == ["gann", "gbob"] and body["display_name"] == "Platform"
    status, body = await owner.request("PATCH", "/api/v2/groups/platform", {"add_users": ["ghost"]})
    assert status == 404 and "ghost" in body["message"]
    assert (await owner.request("PATCH", "/api/v2/groups/nosuch", {"add_users": ["gann"]}))[0] == 404
    assert (await owner.request("PATCH", "/api/v2/groups/platform", {"add_users": "gann"}))[0] == 400
    assert (await owner.request("PATCH", "/api/v2/groups/data", {"name": "platform"}))[0] == 409
    assert (await ann.request("PATCH", "/api/v2/groups/platform", {"remove_users": ["gbob"]}))[0] == 403
    status, by_id = await owner.get(f"/api/v2/groups/{made['id']}")
    assert status == 200 and by_id["total_member_count"] == 2

    # Owners and auditors read every group; a member only its own.
    names = {g["name"] for g in (await auditor.get("/api/v2/groups"))[1]["groups"]}
    assert {"platform", "data"} <= names
    status, listed = await ann.get("/api/v2/groups")
    assert status == 200 and [g["name"] for g in listed["groups"]] == ["platform"]
    assert (await ann.get("/api/v2/groups/platform"))[0] == 200
    assert (await ann.get("/api/v2/groups/data"))[0] == 404
    assert (await auditor.get("/api/v2/groups/data"))[0] == 200
    assert (await auditor.request("DELETE", "/api/v2/groups/data"))[0] == 403
    assert (await owner.get("/api/v2/groups/nosuch"))[0] == 404

    assert (await _me(ann))["groups"] == ["platform"]
    assert (await owner.get("/api/v2/users/gbob"))[1]["groups"] == ["platform"]

    # A rename keeps the members; a removal and a deletion apply at once.
    status, body = await owner.request("PATCH", "/api/v2/groups/platform",
                                       {"name": "infra", "remove_users": ["gbob"]})
    assert status == 200 and body["name"] == "infra" and [m["username"] for m in body["members"]] == ["gann"]
    assert (await _me(ann))["groups"] == ["infra"] and (await _me(bob))["groups"] == []
    assert (await owner.request("DELETE", "/api/v2/groups/infra"))[0] == 204
    assert (await owner.request("DELETE", "/api/v2/groups/infra"))[0] == 404
    assert (await _me(ann))["groups"] == []


async def test_groups_cli(env: Env) -> None:
    member = env.server.create_user("gcli")
    admin = env.server.admin_token
    done = env.cli(admin, "groups", "create", "cli-team", "--display-name", "CLI team")
    assert done.returncode == 0 and "created group cli-team" in done.stdout, done.stderr
    done = env.cli(admin, "groups", "add", "cli-team", "gcli")
    assert done.returncode == 0 and "group cli-team: gcli" in done.stdout, done.stderr
    listed = env.cli(admin, "groups", "list")
    row = next(x for x in listed.stdout.splitlines() if x.startswith("cli-team"))
    assert row.split()[:3] == ["cli-team", "1", "manual"]
    assert "cli-team" in env.cli(member, "groups", "list").stdout          # a member sees its own
    refused = env.cli(member, "groups", "create", "sneaky")
    assert refused.returncode == 2 and "403" in refused.stderr
    missing = env.cli(admin, "groups", "add", "cli-team", "nobody-here")
    assert missing.returncode == 2 and "404" in missing.stderr
    done = env.cli(admin, "groups", "remove", "cli-team", "gcli")
    assert done.returncode == 0 and "no members" in done.stdout, done.stderr
    done = env.cli(admin, "groups", "delete", "cli-team")
    assert done.returncode == 0, done.stderr
    assert "cli-team" not in env.cli(admin, "groups", "list").stdout


# ---------------------------------------------------------------- model rules

async def test_a_group_model_rule_refuses_its_members_only(env: Env) -> None:
    owner = env.owner()
    inside, outside = env.server.create_user("mr-in"), env.server.create_user("mr-out")
    both = env.server.create_user("mr-both")
    assert (await owner.post("/api/v2/groups", {"name": "haiku-only"}))[0] == 201
    assert (await owner.request("PATCH", "/api/v2/groups/haiku-only",
                                {"add_users": ["mr-in", "mr-both"]}))[0] == 200
    try:
        done = env.cli(env.server.admin_token, "models", "allow", "--group", "haiku-only", "claude-haiku-*")
        assert done.returncode == 0, done.stderr
        done = env.cli(env.server.admin_token, "models", "allow", "--user", "mr-both", "claude-opus-*")
        assert done.returncode == 0, done.stderr
        before = len(env.fake.requests_to("/v1/messages"))
        status, body = await message(env, inside, "claude-opus-4-5")
        assert status == 403 and body["error"]["type"] == "permission_error"
        assert "allowed models: claude-haiku-*" in body["error"]["message"]
        assert len(env.fake.requests_to("/v1/messages")) == before              # never sent upstream
        assert (await message(env, inside, "claude-haiku-4-5"))[0] == 200
        assert (await message(env, outside, "claude-opus-4-5"))[0] == 200       # not a member: no rule
        assert (await message(env, both, "claude-opus-4-5"))[0] == 200          # its own rule allows it
        assert (await message(env, both, "claude-haiku-4-5"))[0] == 200         # and its group's
        assert (await message(env, both, "claude-sonnet-4-5"))[0] == 403
        _, rules = await owner.get("/api/v2/aibridge/model-rules")
        assert {"scope": "group", "subject": "haiku-only", "models": ["claude-haiku-*"]} in rules["allow"]

        # Leaving the group lifts its rule at once; a deleted group's rule goes with it.
        assert (await owner.request("PATCH", "/api/v2/groups/haiku-only", {"remove_users": ["mr-in"]}))[0] == 200
        assert (await message(env, inside, "claude-opus-4-5"))[0] == 200
        assert (await owner.request("DELETE", "/api/v2/groups/haiku-only"))[0] == 204
        _, rules = await owner.get("/api/v2/aibridge/model-rules")
        assert not [r for r in rules["allow"] if r["scope"] == "group"]
        assert (await message(env, both, "claude-haiku-4-5"))[0] == 403        # its own rule alone now
    finally:
        await owner.request("DELETE", "/api/v2/groups/haiku-only")
        await owner.request("PUT", "/api/v2/aibridge/model-rules", {"allow": [{"user": "mr-both", "models": None}]})


# ---------------------------------------------------------------- budgets

async def test_budget_precedence_user_then_highest_group_then_role(env: Env) -> None:
    owner = env.owner()
    auditor = Client(env.server.url, env.server.create_user("bp-audit", "auditor"))
    pia = Client(env.server.url, env.server.create_user("bp-pia"))
    for name in ("bp-small", "bp-big"):
        assert (await owner.post("/api/v2/groups", {"name": name}))[0] == 201
        assert (await owner.request("PATCH", f"/api/v2/groups/{name}", {"add_users": ["bp-pia"]}))[0] == 200
    try:
        assert (await owner.request("PUT", "/api/v2/aibridge/budgets/role:auditor",
                                    {"period": "month", "limit_usd": 50}))[0] == 200
        assert (await owner.request("PUT", "/api/v2/aibridge/budgets/role:member",
                                    {"period": "month", "limit_usd": 50}))[0] == 200
        assert (await _me(pia))["budget"]["source"] == "role:member"
        assert (await _me(auditor))["budget"]["source"] == "role:auditor"

        done = env.cli(env.server.admin_token, "budgets", "set", "--group", "bp-small", "--period", "month",
                       "--limit-usd", "3")
        assert done.returncode == 0, done.stderr
        status, _ = await owner.request("PUT", "/api/v2/aibridge/budgets/group:bp-big",
                                        {"period": "week", "limit_usd": 8})
        assert status == 200
        budget = (await _me(pia))["budget"]
        assert budget["source"] == "group:bp-big" and budget["limit_usd"] == 8 and budget["period"] == "week"

        # Coder's route: monthly, in micro-dollars; now bp-small is the highest.
        status, body = await owner.request("PUT", "/api/v2/groups/bp-small/ai/budget",
                                           {"spend_limit_micros": 20_000_000})
        assert status == 200 and body["spend_limit_micros"] == 20_000_000
        status, body = await auditor.get("/api/v2/groups/bp-small/ai/budget")
        assert status == 200 and body["spend_limit_micros"] == 20_000_000 and body["period"] == "month"
        assert (await pia.request("PUT", "/api/v2/groups/bp-small/ai/budget",
                                  {"spend_limit_micros": 1}))[0] == 403
        assert (await owner.request("PUT", "/api/v2/groups/bp-small/ai/budget",
                                    {"spend_limit_micros": -1}))[0] == 400
        budget = (await _me(pia))["budget"]
        assert budget["source"] == "group:bp-small" and budget["limit_usd"] == 20 and budget["period"] == "month"

        # A user's own budget beats every group's (Coder's per-user override).
        _, small = await owner.get("/api/v2/groups/bp-small")
        status, body = await owner.request("PUT", "/api/v2/users/bp-pia/ai/budget",
                                           {"group_id": small["id"], "spend_limit_micros": 1_000_000})
        assert status == 200, body
        budget = (await _me(pia))["budget"]
        assert budget["source"] == "user" and budget["limit_usd"] == 1
        status, body = await pia.get("/api/v2/users/me/ai/budget")
        assert status == 200 and body["spend_limit_micros"] == 1_000_000
        status, body = await owner.request("PUT", "/api/v2/users/bp-audit/ai/budget",
                                           {"group_id": small["id"], "spend_limit_micros": 1})
        assert status == 400 and "not a member" in body["message"]
        assert (await owner.request("DELETE", "/api/v2/users/bp-pia/ai/budget"))[0] == 204
        assert (await _me(pia))["budget"]["source"] == "group:bp-small"

        assert (await owner.request("DELETE", "/api/v2/groups/bp-small/ai/budget"))[0] == 204
        assert (await owner.get("/api/v2/groups/bp-small/ai/budget"))[0] == 404
        assert (await _me(pia))["budget"]["source"] == "group:bp-big"
        assert (await owner.request("PUT", "/api/v2/aibridge/budgets/group:nosuch",
                                    {"period": "day", "limit_usd": 1}))[0] == 404
        _, listed = await auditor.get("/api/v2/aibridge/budgets")
        assert {"scope": "group", "subject": "bp-big", "period": "week", "limit_usd": 8, "source": "owner"} in \
            listed["budgets"]
        done = env.cli(env.server.admin_token, "budgets", "delete", "--group", "bp-big")
        assert done.returncode == 0, done.stderr
        assert (await _me(pia))["budget"]["source"] == "role:member"
    finally:
        for target in ("role:member", "role:auditor"):
            await owner.request("DELETE", f"/api/v2/aibridge/budgets/{target}")
        for name in ("bp-small", "bp-big"):
            await owner.request("DELETE", f"/api/v2/groups/{name}")


# ---------------------------------------------------------------- spend

async def test_spend_by_group(env: Env) -> None:
    owner = env.owner()
    tokens = {name: env.server.create_user(name) for name in ("sg-one", "sg-two", "sg-none")}
    for name in ("sg-a", "sg-b"):
        assert (await owner.post("/api/v2/groups", {"name": name}))[0] == 201
    assert (await owner.request("PATCH", "/api/v2/groups/sg-a", {"add_users": ["sg-one", "sg-two"]}))[0] == 200
    assert (await owner.request("PATCH", "/api/v2/groups/sg-b", {"add_users": ["sg-two"]}))[0] == 200
    for token in tokens.values():
        assert (await message(env, token, "claude-haiku-4-5"))[0] == 200
    one = cost((1.0, 5.0), SIMPLE_USAGE)

    async def recorded() -> Any:
        _, found = await owner.get("/api/v2/aibridge/spend?group_by=user")
        mine = [r for r in found["results"] if r["user"] in tokens]
        return found if len(mine) == 3 else None
    assert await wait_for(recorded)

    status, body = await owner.get("/api/v2/aibridge/spend?group_by=group")
    assert status == 200 and body["group_by"] == ["group"]
    rows = {r["group"]: r for r in body["results"]}
    assert rows["sg-a"]["requests"] == 2 and rows["sg-a"]["cost_usd"] == pytest.approx(2 * one)
    assert rows["sg-b"]["requests"] == 1 and rows["sg-b"]["cost_usd"] == pytest.approx(one)
    assert None in rows                                                     # users in no group
    status, body = await owner.get("/api/v2/aibridge/spend?group_by=group,user")
    pairs = {(r["group"], r["user"]) for r in body["results"]}
    assert {("sg-a", "sg-one"), ("sg-a", "sg-two"), ("sg-b", "sg-two"), (None, "sg-none")} <= pairs
    status, own = await Client(env.server.url, tokens["sg-two"]).get("/api/v2/aibridge/spend?group_by=group")
    assert status == 200 and sorted(r["group"] for r in own["results"]) == ["sg-a", "sg-b"]   # its own spend
    done = env.cli(env.server.admin_token, "spend", "--group-by", "group", "--format", "csv")
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].startswith("group,cost_usd,requests,unpriced_requests,input_tokens")


# ---------------------------------------------------------------- the bound with groups

async def test_group_budget_holds_for_each_member_under_concurrency(database: Database) -> None:
    """50 concurrent requests from 5 members of one group with a $5 group budget (each at the edge):
    each member is admitted once and ends at most one reservation over $5. On PostgreSQL the
    requests alternate between two replicas."""
    fake = FakeUpstream()
    await fake.start()
    servers = ([await ServerProcess(database, env=bridge_env(fake)).start()] if database.backend == "sqlite"
               else await start_replicas(database, bridge_env(fake), 2))
    try:
        first = next(s for s in servers if s.admin_token)
        owner = Client(first.url, first.admin_token)
        names = [f"crew{i}" for i in range(5)]
        tokens = [first.create_user(name) for name in names]
        big = 4.99 / sum(SIMPLE_USAGE) * 1_000_000
        for model, price in (("claude-grp-big*", big), ("claude-grp-small*", 200.0)):
            assert (await owner.request("PUT", f"/api/v2/aibridge/prices/{model}",
                                        {"input": price, "output": price}))[0] == 200
        assert (await owner.post("/api/v2/groups", {"name": "crew"}))[0] == 201
        assert (await owner.request("PATCH", "/api/v2/groups/crew", {"add_users": names}))[0] == 200
        assert (await owner.request("PUT", "/api/v2/groups/crew/ai/budget", {"spend_limit_micros": 5_000_000}))[0] \
            == 200
        for server in servers:                      # the rule and the memberships reached every replica
            async def applied(server: ServerProcess = server) -> bool:
                budget = (await _me(Client(server.url, tokens[-1])))["budget"]
                return bool(budget and budget["source"] == "group:crew")
            assert await wait_for(applied, 5)

        envs = [Env(s, fake) for s in servers]
        for i, token in enumerate(tokens):
            assert (await message(envs[i % len(envs)], token, "claude-grp-big"))[0] == 200
        for token in tokens:
            assert await wait_for(lambda token=token: _spent(Client(first.url, token), 4.99))

        upstream_before = len(fake.requests_to("/v1/messages"))
        jobs = [(i, envs[n % len(envs)]) for n, i in enumerate(i for _ in range(10) for i in range(5))]
        results = await asyncio.gather(*(message(e, tokens[i], "claude-grp-small-scenario-slow") for i, e in jobs))
        admitted = [i for (i, _), (status, _) in zip(jobs, results, strict=True) if status == 200]
        assert sorted(admitted) == list(range(5)), [r[0] for r in results]     # one per member
        assert {status for status, _ in results if status != 200} == {403}
        assert len(fake.requests_to("/v1/messages")) == upstream_before + 5

        reservation = ((len(_body("claude-grp-small-scenario-slow")) + 2) // 3 + 100) * 200.0 / 1_000_000
        for token in tokens:
            final = await wait_for(lambda token=token: _spent(Client(first.url, token), 5.0))
            assert final - 5.0 <= reservation
            assert final == pytest.approx(4.99 + cost((200.0, 200.0), SLOW_USAGE))
        status, body = await message(envs[-1], tokens[0], "claude-grp-small")
        assert status == 403 and "of the crew group's $5.00 monthly budget" in body["error"]["message"]
    finally:
        for server in servers:
            server.stop()
        await fake.stop()


async def _spent(client: Client, at_least: float) -> float | None:
    budget = (await _me(client))["budget"]
    spent: float = budget["spent_usd"]
    return spent if spent >= at_least - 1e-6 else None


async def test_yaml_group_rules_and_a_bad_budget_policy(database: Database) -> None:
    fake = FakeUpstream()
    await fake.start()
    config = database.data_dir / "aibridge.yaml"
    config.write_text("""
aibridge:
  budget_policy: highest
  budgets:
    - {group: yaml-crew, period: week, limit_usd: 4}
  model_rules:
    allow:
      - {group: yaml-crew, models: ["claude-haiku-*"]}
""")
    server = await ServerProcess(database, env={**bridge_env(fake), "CODER_CONFIG_PATH": str(config)}).start()
    try:
        owner = Client(server.url, server.admin_token)
        token = server.create_user("yuri")
        assert (await owner.post("/api/v2/groups", {"name": "yaml-crew"}))[0] == 201
        assert (await owner.request("PATCH", "/api/v2/groups/yaml-crew", {"add_users": ["yuri"]}))[0] == 200
        budget = (await _me(Client(server.url, token)))["budget"]
        assert budget["source"] == "group:yaml-crew" and budget["limit_usd"] == 4 and budget["period"] == "week"
        assert (await message(Env(server, fake), token, "claude-opus-4-5"))[0] == 403
        assert (await message(Env(server, fake), token, "claude-haiku-4-5"))[0] == 200
    finally:
        server.stop()
        await fake.stop()
    bad = ServerProcess(database, env={**bridge_env(fake), "CODER_AI_BUDGET_POLICY": "lowest"})
    with pytest.raises(RuntimeError, match="exited with 2"):
        await bad.start()
    assert bad.output().strip().splitlines()[-1] == (
        "error: CODER_AI_BUDGET_POLICY: invalid budget policy 'lowest' (only highest is supported)")
