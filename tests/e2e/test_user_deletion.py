"""Deleting a user as Coder does (issue 20, 3.5): marked deleted, tokens revoked, the username
free again, its records kept and shown as a deleted user's (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import pytest

from tests.e2e.conftest import bridge_env
from tests.e2e.records import latest
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess


@pytest.fixture(scope="module")
async def server(module_database: Database) -> AsyncIterator[ServerProcess]:
    fake = FakeUpstream()
    await fake.start()
    proc = await ServerProcess(module_database, env=bridge_env(fake)).start()
    try:
        yield proc
    finally:
        proc.stop()
        await fake.stop()


async def ask(server: ServerProcess, token: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=server.url + "/api/v2/aibridge/anthropic", api_key=token)
    await client.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=100,
                                 messages=[{"role": "user", "content": "hi"}])


async def test_deleting_a_user_with_records_over_rest(server: ServerProcess) -> None:
    owner = Client(server.url, server.admin_token)
    token = server.create_user("leaver")
    await ask(server, token)
    record = await latest(owner, "initiator:leaver")
    old_id = record["initiator"]["id"]
    assert record["initiator"]["deleted"] is False

    assert (await owner.request("DELETE", "/api/v2/users/leaver"))[0] == 204
    status, body = await Client(server.url, token).get("/api/v2/users/me")
    assert status == 403                                                  # its tokens are revoked
    assert (await owner.get("/api/v2/users/leaver"))[0] == 404
    assert (await owner.request("DELETE", "/api/v2/users/leaver"))[0] == 404

    status, listed = await owner.get("/api/v2/users")
    assert status == 200 and "leaver" not in [u["username"] for u in listed["users"]]
    status, listed = await owner.get("/api/v2/users?include_deleted=true")
    gone = [u for u in listed["users"] if u["id"] == old_id]
    assert status == 200 and gone and gone[0]["status"] == "deleted" and gone[0]["deleted_at"]

    # Its records stay attributed to it, shown as a deleted user's.
    status, body = await owner.get(f"/api/v2/aibridge/interceptions?q=initiator:{old_id}")
    assert status == 200 and [r["id"] for r in body["results"]] == [record["id"]]
    assert body["results"][0]["initiator"] == {"id": old_id, "username": "leaver", "name": "", "deleted": True}

    # The username is free again: a new user, not the old one.
    status, made = await owner.post("/api/v2/users", {"username": "leaver"})
    assert status == 201 and made["id"] != old_id
    assert (await owner.post("/api/v2/users", {"username": "Leaver"}))[0] == 409      # still unique among the living
    status, fresh = await owner.get("/api/v2/users/leaver")
    assert status == 200 and fresh["id"] == made["id"] and fresh["status"] == "active"


async def test_deleting_a_user_with_records_with_the_cli(server: ServerProcess) -> None:
    owner = Client(server.url, server.admin_token)
    token = server.create_user("quitter2")
    await ask(server, token)
    record = await latest(owner, "initiator:quitter2")
    done = server.cli("users", "delete", "quitter2")
    assert done.returncode == 0 and "deleted user quitter2" in done.stdout, done.stderr
    assert "quitter2" not in server.cli("users", "list").stdout
    shown = server.cli("users", "list", "--deleted").stdout
    assert any(line.split()[:3] == ["quitter2", "member", "deleted"] for line in shown.splitlines()), shown
    assert server.cli("users", "delete", "quitter2").returncode == 2          # no such (living) user
    status, body = await owner.get(f"/api/v2/aibridge/interceptions?q=initiator:{record['initiator']['id']}")
    assert status == 200 and body["results"][0]["initiator"]["deleted"] is True
    assert server.cli("users", "create", "quitter2").returncode == 0
