"""The audit log through a real server (issue 22, DESIGN §2.6): every change made through the REST
API and the CLI, allowed or refused, as owner, auditor and member, appears with its actor, action,
target, status and diff, and never a token's secret; filters, CSV, ``aibridge audit``; no route
writes or deletes a row; retention purges old rows; replicas share one log."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from aibridge.store import audit
from aibridge.store.db import create_engine, migrate
from tests.harness import POSTGRES_URL, Client, Database, ServerProcess, run_cli, wait_for
from tests.unit.test_retention import database_url

AUDIT = "/api/v2/audit"


@dataclass
class Env:
    server: ServerProcess
    owner: Client
    auditor: Client
    member: Client

    def cli(self, token: str, *args: str) -> Any:
        return run_cli(list(args), {**self.server.env, "CODER_URL": self.server.url, "CODER_SESSION_TOKEN": token})


@pytest.fixture(scope="module")
async def env(module_database: Database) -> AsyncIterator[Env]:
    # Two workers: a row written by one is read by the other.
    server = await ServerProcess(module_database, env={"CODER_AIBRIDGE_WORKERS": "2"}).start()
    try:
        auditor, member = server.create_user("aud", "auditor"), server.create_user("mem")
        yield Env(server, Client(server.url, server.admin_token), Client(server.url, auditor),
                  Client(server.url, member))
    finally:
        server.stop()


async def logs(client: Client, q: str = "", **params: str) -> tuple[int, Any]:
    query = "&".join(f"{k}={v}" for k, v in {"limit": "1000", **params}.items())
    return await client.get(f"{AUDIT}?{query}" + (f"&q={q}" if q else ""))


Expected = tuple[str, str, str, str, int]      # username, action, resource_type, resource_target, status


async def make_changes(env: Env) -> tuple[list[Expected], list[str]]:
    """Twenty-five kinds of change, allowed and refused; the expected rows and the secrets made."""
    owner, auditor, member = env.owner, env.auditor, env.member
    steps: list[tuple[Client, str, str, Any, Expected]] = [
        (owner, "POST", "/api/v2/users", {"username": "zed", "email": "z@example.com"},
         ("admin", "create", "user", "zed", 201)),
        (owner, "POST", "/api/v2/users", {"username": "zed"}, ("admin", "create", "user", "zed", 409)),
        (owner, "POST", "/api/v2/users", {"username": "bad name!"}, ("admin", "create", "user", "bad name!", 400)),
        (owner, "POST", "/api/v2/users/zed/status/suspend", None, ("admin", "write", "user", "zed", 200)),
        (owner, "POST", "/api/v2/users/zed/status/activate", None, ("admin", "write", "user", "zed", 200)),
        (owner, "DELETE", "/api/v2/users/zed/keys/nosuchkey1", None,
         ("admin", "delete", "api_key", "nosuchkey1", 404)),
        (owner, "PUT", "/api/v2/aibridge/prices/gpt-audit", {"input": 1, "output": 2},
         ("admin", "write", "price", "gpt-audit", 200)),
        (owner, "PUT", "/api/v2/aibridge/prices/gpt-audit", {"input": -1},
         ("admin", "write", "price", "gpt-audit", 400)),
        (owner, "DELETE", "/api/v2/aibridge/prices/gpt-audit", None, ("admin", "delete", "price", "gpt-audit", 204)),
        (owner, "DELETE", "/api/v2/aibridge/prices/gpt-audit", None, ("admin", "delete", "price", "gpt-audit", 404)),
        (owner, "PUT", "/api/v2/aibridge/budgets/user:zed", {"period": "month", "limit_usd": 5},
         ("admin", "write", "budget", "user:zed", 200)),
        (owner, "PUT", "/api/v2/aibridge/budgets/user:nobody", {"period": "month", "limit_usd": 5},
         ("admin", "write", "budget", "user:nobody", 404)),
        (owner, "DELETE", "/api/v2/aibridge/budgets/user:zed", None, ("admin", "delete", "budget", "user:zed", 204)),
        (owner, "PUT", "/api/v2/aibridge/model-rules",
         {"allow": [{"user": "zed", "models": ["gpt-*"]}],
          "aliases": [{"from": "fast", "to": "gpt-4o-mini", "provider": "openai"}]},
         ("admin", "write", "model_rule", "user:zed, fast@openai", 200)),
        (owner, "DELETE", "/api/v2/users/me", None, ("admin", "delete", "user", "me", 400)),
        (member, "POST", "/api/v2/users", {"username": "sneaky"}, ("mem", "create", "user", "", 403)),
        (member, "PUT", "/api/v2/aibridge/prices/gpt-x", {"input": 0, "output": 0},
         ("mem", "write", "price", "gpt-x", 403)),
        (member, "POST", "/api/v2/users/aud/keys/tokens", {}, ("mem", "create", "api_key", "", 403)),
        (member, "DELETE", "/api/v2/users/zed", None, ("mem", "delete", "user", "zed", 403)),
        (auditor, "PUT", "/api/v2/aibridge/budgets/role:member", {"period": "day", "limit_usd": 1},
         ("aud", "write", "budget", "role:member", 403)),
        (auditor, "POST", "/api/v2/users/mem/status/suspend", None, ("aud", "write", "user", "mem", 403)),
        (auditor, "DELETE", "/api/v2/aibridge/budgets/role:member", None,
         ("aud", "delete", "budget", "role:member", 403)),
    ]
    expected: list[Expected] = []
    secrets: list[str] = []
    for client, method, path, body, row in steps:
        status, answer = await client.request(method, path, body)
        assert status == row[4], (method, path, status, answer)
        expected.append(row)
    # Tokens: made by the owner for zed (then revoked) and by a member for itself.
    status, made = await owner.post("/api/v2/users/zed/keys/tokens", {"token_name": "ci"})
    assert status == 201
    secrets.append(made["key"])
    expected.append(("admin", "create", "api_key", "ci", 201))
    status, _ = await owner.request("DELETE", f"/api/v2/users/zed/keys/{made['id']}")
    assert status == 204
    expected.append(("admin", "delete", "api_key", made["id"], 204))
    status, own = await member.post("/api/v2/users/me/keys/tokens", {"token_name": "laptop"})
    assert status == 201
    secrets.append(own["key"])
    expected.append(("mem", "create", "api_key", "laptop", 201))
    status, _ = await owner.request("DELETE", "/api/v2/users/zed")
    assert status == 204
    expected.append(("admin", "delete", "user", "zed", 204))
    return expected, secrets


def key(row: dict[str, Any]) -> Expected:
    return ((row["user"] or {}).get("username", ""), row["action"], row["resource_type"], row["resource_target"],
            row["status_code"])


async def test_every_change_is_logged_with_its_actor_target_status_and_diff_and_no_secret(env: Env) -> None:
    status, before = await logs(env.auditor)
    assert status == 200
    await env.owner.get("/api/v2/users")                    # reads are not logged
    expected, secrets = await make_changes(env)
    status, after = await logs(env.auditor)
    assert status == 200 and after["count"] == before["count"] + len(expected)
    new = list(reversed(after["audit_logs"][:len(expected)]))      # newest first → in order
    assert [key(r) for r in new] == expected
    rows: dict[Expected, dict[str, Any]] = {}
    for row in new:
        rows.setdefault(key(row), row)           # the first of a kind (suspend before activate)
    assert rows[("admin", "create", "user", "zed", 201)]["diff"]["email"] == {
        "old": None, "new": "z@example.com", "secret": False}
    assert rows[("admin", "write", "user", "zed", 200)]["diff"] == {
        "status": {"old": "active", "new": "suspended", "secret": False}}
    token_row = rows[("admin", "create", "api_key", "ci", 201)]
    assert token_row["diff"]["key"] == {"old": None, "new": None, "secret": True}
    assert token_row["diff"]["token_name"]["new"] == "ci"
    assert rows[("admin", "write", "price", "gpt-audit", 200)]["diff"]["output"] == {
        "old": None, "new": 2.0, "secret": False}
    assert rows[("admin", "write", "budget", "user:zed", 200)]["diff"]["limit_usd"]["new"] == 5.0
    assert rows[("admin", "write", "model_rule", "user:zed, fast@openai", 200)]["diff"] == {
        "allow user:zed": {"old": None, "new": ["gpt-*"], "secret": False},
        "alias fast@openai": {"old": None, "new": "gpt-4o-mini", "secret": False}}
    assert rows[("mem", "create", "user", "", 403)]["diff"] == {}
    for row in new:
        assert row["ip"] == "127.0.0.1" and row["request_id"] and row["user_agent"].startswith("Python")
    # No secret anywhere in the log, in JSON or CSV.
    _, raw = await env.owner.get(f"{AUDIT}?limit=1000&format=csv")
    for secret in secrets:
        token_secret = secret.split("-", 1)[1]
        assert token_secret not in str(after) and token_secret not in raw


async def test_request_ids_are_returned_and_recorded(env: Env) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"Coder-Session-Token": env.server.admin_token, "X-Request-Id": "trace-42"}
        async with session.put(env.server.url + "/api/v2/aibridge/prices/rid-model", json={"input": 1, "output": 1},
                               headers=headers) as resp:
            assert resp.status == 200 and resp.headers["X-Request-Id"] == "trace-42"
        async with session.delete(env.server.url + "/api/v2/aibridge/prices/rid-model",
                                  headers={"Coder-Session-Token": env.server.admin_token}) as resp:
            made = resp.headers["X-Request-Id"]
            assert resp.status == 204 and len(made) == 36
    _, found = await logs(env.owner, "resource_target:rid-model")
    assert [r["request_id"] for r in found["audit_logs"]] == [made, "trace-42"]


async def test_filters_csv_and_the_cli(env: Env) -> None:
    await env.owner.request("PUT", "/api/v2/aibridge/prices/filter-model", {"input": 3, "output": 3})
    await env.member.request("PUT", "/api/v2/aibridge/prices/filter-model", {"input": 4, "output": 4})
    _, by_type = await logs(env.owner, "resource_type:price resource_target:filter-model")
    assert [key(r) for r in by_type["audit_logs"]] == [("mem", "write", "price", "filter-model", 403),
                                                       ("admin", "write", "price", "filter-model", 200)]
    _, by_user = await logs(env.owner, "username:mem resource_target:filter-model action:write")
    assert by_user["count"] == 1
    today = dt.datetime.now(dt.UTC).date()
    _, dated = await logs(env.owner, f"resource_target:filter-model date_from:{today} date_to:{today}")
    assert dated["count"] == 2
    _, earlier = await logs(env.owner, f"resource_target:filter-model date_to:{today - dt.timedelta(days=1)}")
    assert earlier["count"] == 0
    _, paged = await logs(env.owner, "resource_target:filter-model", limit="1", offset="1")
    assert paged["count"] == 2 and [key(r)[0] for r in paged["audit_logs"]] == ["admin"]
    for bad in ("colour:red", "action:frobnicate", "date_from:yesterday"):
        status, error = await logs(env.owner, bad)
        assert status == 400 and error["message"], bad
    status, _ = await logs(env.member)
    assert status == 403
    _, text = await env.auditor.get(f"{AUDIT}?q=resource_target:filter-model&format=csv")
    table = list(csv.DictReader(io.StringIO(text)))
    assert [(r["username"], r["status_code"]) for r in table] == [("mem", "403"), ("admin", "200")]
    # The CLI: REST client of the log, and its own user and token commands write rows too.
    made = env.server.cli("users", "create", "cliuser")
    assert made.returncode == 0, made.stderr
    token = env.server.cli("tokens", "create", "cliuser").stdout.strip()
    assert env.server.cli("tokens", "revoke", token).returncode == 0
    assert env.server.cli("users", "suspend", "nobody-here").returncode != 0
    listed = env.cli(env.server.admin_token, "audit", "--resource-type", "api_key", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert token.split("-", 1)[1] not in listed.stdout
    cli_rows = [r for r in orjson.loads(listed.stdout) if r["additional_fields"].get("via") == "cli"]
    assert [(r["action"], r["resource_id"]) for r in cli_rows[:2]] == [("delete", token.split("-")[0]),
                                                                      ("create", token.split("-")[0])]
    assert cli_rows[1]["diff"]["key"] == {"old": None, "new": None, "secret": True}
    assert cli_rows[0]["user_agent"].startswith("aibridge-cli/")
    refused = env.cli(env.server.admin_token, "audit", "--resource-type", "user",
                      "--format", "csv", "--limit", "1000")
    assert refused.returncode == 0
    assert ",user,,nobody-here,404," in refused.stdout and "cliuser" in refused.stdout
    assert env.cli(env.member.token, "audit").returncode != 0          # members may not read it


@pytest.mark.parametrize("path", [AUDIT, f"{AUDIT}/00000000-0000-0000-0000-000000000001"])
async def test_no_route_writes_or_deletes_audit_rows(env: Env, path: str) -> None:
    _, before = await logs(env.owner)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        status, _ = await env.owner.request(method, path, {"action": "create", "resource_type": "user"})
        assert status in (404, 405), (method, path, status)
    status, _ = await env.owner.get(f"{AUDIT}/00000000-0000-0000-0000-000000000001")
    assert status in (404, 405)
    _, after = await logs(env.owner)
    assert after["count"] == before["count"]


async def test_retention_purges_old_rows(database: Database) -> None:
    engine = create_engine(database_url(database))
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            for days in (120, 95, 10):
                await audit.record(conn, audit.Actor(username="old"), audit.Entry(
                    "write", "price", resource_target=f"{days}d"), at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days))
    finally:
        await engine.dispose()
    server = await ServerProcess(database).start()
    try:
        owner = Client(server.url, server.admin_token)

        async def purged() -> Any:
            _, found = await logs(owner, "username:old")
            return [r["resource_target"] for r in found["audit_logs"]] == ["10d"]
        assert await wait_for(purged, timeout=20)
    finally:
        server.stop()


@pytest.mark.skipif(not POSTGRES_URL, reason="replicas share one PostgreSQL: set AIBRIDGE_TEST_POSTGRES_URL")
async def test_two_replicas_share_one_log() -> None:
    from tests.e2e.test_replicas import start_replicas

    async with Database("postgres") as db:
        replicas = await start_replicas(db, {}, 2)
        try:
            token = next(r.admin_token for r in replicas if r.admin_token)
            first, second = (Client(r.url, token) for r in replicas)
            status, _ = await first.request("PUT", "/api/v2/aibridge/prices/replica-model", {"input": 1, "output": 1})
            assert status == 200
            _, found = await logs(second, "resource_target:replica-model")
            assert [key(r) for r in found["audit_logs"]] == [("admin", "write", "price", "replica-model", 200)]
            status, _ = await second.request("DELETE", "/api/v2/aibridge/prices/replica-model")
            _, found = await logs(first, "resource_target:replica-model")
            assert found["count"] == 2 and found["audit_logs"][0]["action"] == "delete"
        finally:
            for replica in replicas:
                replica.stop()
