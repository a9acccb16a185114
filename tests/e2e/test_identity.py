"""Users, tokens, authentication and roles against a real server process (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.harness import Client, Database, ServerProcess, run_cli


@pytest.fixture(scope="module")
async def server(module_database: Database) -> AsyncIterator[ServerProcess]:
    proc = await ServerProcess(module_database, env={"CODER_AIBRIDGE_SHUTDOWN_GRACE": "5s"}).start()
    yield proc
    proc.stop()


async def test_first_start_creates_owner_and_prints_token_once(server: ServerProcess) -> None:
    assert server.admin_token, server.output()
    assert "ANTHROPIC_BASE_URL=" + server.url + "/api/v2/aibridge/anthropic" in server.output()
    status, me = await Client(server.url, server.admin_token).get("/api/v2/users/me")
    assert status == 200
    assert me["username"] == "admin"
    assert me["role"] == "owner"


async def test_cli_user_and_token_work_with_each_header_form(server: ServerProcess) -> None:
    made = server.cli("users", "create", "carol", "--role", "member", "--email", "carol@example.com")
    assert made.returncode == 0, made.stderr
    printed = server.cli("tokens", "create", "carol", "--lifetime", "24h", "--name", "laptop")
    assert printed.returncode == 0
    assert printed.stderr.startswith("database: SQLite " if server.db.backend == "sqlite" else "database: PostgreSQL ")
    token = printed.stdout.strip()
    assert printed.stdout == token + "\n"                  # the token and nothing else
    assert "\n" not in token and len(token.split("-", 1)[1]) >= 22
    for header in ({"Coder-Session-Token": token}, {"Authorization": f"Bearer {token}"}, {"X-Api-Key": token}):
        status, me = await Client(server.url, "").get("/api/v2/users/me", headers=header)
        assert status == 200, (header, me)
        assert me["username"] == "carol"
        assert me["role"] == "member"


async def test_authentication_matrix(server: ServerProcess) -> None:
    token = server.create_user("dave")
    anonymous = Client(server.url, "")
    status, body = await anonymous.get("/api/v2/users/me")
    assert status == 401 and "missing API token" in body["message"]
    for bad in ("garbage", "abcdefghij-" + "x" * 30, token[:-1] + ("A" if token[-1] != "A" else "B")):
        status, body = await Client(server.url, bad).get("/api/v2/users/me")
        assert status == 403, bad
        assert body["message"] == "invalid API token"

    # Revocation through the API takes effect at once in this process.
    status, tokens = await Client(server.url, token).get("/api/v2/users/me/keys/tokens")
    assert status == 200 and len(tokens) == 1
    status, _ = await Client(server.url, token).request("DELETE", f"/api/v2/users/me/keys/{tokens[0]['id']}")
    assert status == 204
    status, body = await Client(server.url, token).get("/api/v2/users/me")
    assert status == 403 and "revoked" in body["message"]


async def test_cli_revocation_takes_effect_within_a_second(server: ServerProcess) -> None:
    token = server.create_user("erin")
    client = Client(server.url, token)
    assert (await client.get("/api/v2/users/me"))[0] == 200          # now cached by the server
    revoked = server.cli("tokens", "revoke", token.split("-", 1)[0])
    assert revoked.returncode == 0, revoked.stderr
    await asyncio.sleep(1.0)                                          # DESIGN §2.6: within 1 s
    status, body = await client.get("/api/v2/users/me")
    assert status == 403 and "revoked" in body["message"]


async def test_expired_token_is_rejected(server: ServerProcess) -> None:
    assert server.cli("users", "create", "frank").returncode == 0
    made = server.cli("tokens", "create", "frank", "--lifetime", "1s")
    assert made.returncode == 0, made.stderr
    await asyncio.sleep(1.2)
    status, body = await Client(server.url, made.stdout.strip()).get("/api/v2/users/me")
    assert status == 403 and "expired" in body["message"]


async def test_roles_on_every_route(server: ServerProcess) -> None:
    owner = Client(server.url, server.admin_token)
    member = Client(server.url, server.create_user("gina", "member"))
    auditor = Client(server.url, server.create_user("hank", "auditor"))

    # Only owners create users.
    assert (await member.post("/api/v2/users", {"username": "x1"}))[0] == 403
    assert (await auditor.post("/api/v2/users", {"username": "x1"}))[0] == 403
    status, made = await owner.post("/api/v2/users", {"username": "ivan", "role": "member", "email": "i@x"})
    assert status == 201 and made["username"] == "ivan" and made["email"] == "i@x"

    # Owners and auditors list users; members cannot.
    assert (await member.get("/api/v2/users"))[0] == 403
    status, listed = await auditor.get("/api/v2/users")
    assert status == 200 and {"admin", "gina", "hank", "ivan"} <= {u["username"] for u in listed["users"]}

    # Tokens: a member cannot read or mint another user's; the owner can.
    assert (await member.get("/api/v2/users/hank/keys/tokens"))[0] == 403
    assert (await member.post("/api/v2/users/ivan/keys/tokens", {}))[0] == 403
    assert (await auditor.get("/api/v2/users/gina/keys/tokens"))[0] == 403
    status, minted = await owner.post("/api/v2/users/ivan/keys/tokens", {"lifetime": "1h", "token_name": "ci"})
    assert status == 201
    status, me = await Client(server.url, minted["key"]).get("/api/v2/users/me")
    assert status == 200 and me["username"] == "ivan"
    assert (await member.request("DELETE", f"/api/v2/users/ivan/keys/{minted['id']}"))[0] == 403
    assert (await owner.request("DELETE", f"/api/v2/users/ivan/keys/{minted['id']}"))[0] == 204

    # Records: everyone may read the export; members see only their own (checked in the bridge tests).
    for client in (owner, auditor, member):
        assert (await client.get("/api/v2/aibridge/interceptions"))[0] == 200


async def test_bridge_routes_say_how_to_enable_the_bridge(server: ServerProcess) -> None:
    """The server starts with AI Bridge disabled: provider routes explain how to turn it on."""
    for method, path in (("POST", "/api/v2/aibridge/anthropic/v1/messages"),
                         ("POST", "/api/v2/aibridge/openai/v1/chat/completions"),
                         ("GET", "/api/v2/aibridge/openai/v1/models")):
        status, body = await Client(server.url, server.admin_token).request(method, path, body={})
        assert status == 404, path
        assert body["message"] == "AI Bridge is not enabled"
        assert "CODER_AIBRIDGE_ENABLED=true" in body["detail"]
    # The API and the export still work.
    assert (await Client(server.url, server.admin_token).get("/api/v2/aibridge/interceptions"))[0] == 200


async def test_bad_input_gets_json_errors(server: ServerProcess) -> None:
    owner = Client(server.url, server.admin_token)
    status, body = await owner.request("POST", "/api/v2/users", raw=b"{not json")
    assert status == 400 and "not valid JSON" in body["message"]
    assert (await owner.request("POST", "/api/v2/users", raw=b"[1]"))[0] == 400
    assert (await owner.post("/api/v2/users", {"username": "bad name!"}))[0] == 400
    assert (await owner.post("/api/v2/users", {"username": "okname", "role": "king"}))[0] == 400
    assert (await owner.post("/api/v2/users", {"username": 5}))[0] == 400
    assert (await owner.post("/api/v2/users", {"username": "dup1"}))[0] == 201
    status, body = await owner.post("/api/v2/users", {"username": "dup1"})
    assert status == 409 and "already exists" in body["message"]
    status, body = await owner.get("/api/v2/users/nobody-here")
    assert status == 404 and "not found" in body["message"]
    assert (await owner.post("/api/v2/users/nobody-here/keys/tokens", {}))[0] == 404
    assert (await owner.post("/api/v2/users/me/keys/tokens", {"lifetime": "forever"}))[0] == 400
    status, body = await owner.get("/api/v2/does-not-exist")
    assert status == 404 and isinstance(body, dict)
    for query in ("?q=colour:red", "?limit=0", "?limit=1001", "?after_id=nope", "?q=started_after:yesterday"):
        status, body = await owner.get("/api/v2/aibridge/interceptions" + query)
        assert status == 400, query
        assert body["message"]
    assert "Traceback" not in server.output()


async def test_cli_errors_are_one_line(database: Database) -> None:
    env = database.env()
    assert run_cli(["users", "create", "zed1"], env).returncode == 0
    dup = run_cli(["users", "create", "zed1"], env)
    assert dup.returncode == 2 and dup.stderr.strip() == "error: user 'zed1' already exists"
    missing = run_cli(["tokens", "create", "nobody"], env)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: user 'nobody' not found"
    assert run_cli(["tokens", "revoke", "abcdefghij"], env).returncode == 2
    listed = run_cli(["users", "list"], env)
    assert listed.returncode == 0 and "zed1" in listed.stdout
    bad = run_cli(["tokens", "create", "zed1", "--lifetime", "soon"], env)
    assert bad.returncode == 2 and "--lifetime" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(("env", "fragment"), [
    ({"CODER_AIBRIDGE_RETENTION": "sixty days"}, "CODER_AIBRIDGE_RETENTION: invalid duration"),
    ({"CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_BEDROCK_ACCESS_KEY": "AKID"},
     "--aibridge-bedrock-region"),
])
def test_server_refuses_bad_configuration_with_one_line(tmp_path: object, env: dict[str, str], fragment: str) -> None:
    result = run_cli(["server"], {"CODER_AIBRIDGE_DATA_DIR": str(tmp_path), **env})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


def test_server_refuses_a_bad_flag_value(tmp_path: object) -> None:
    result = run_cli(["server", "--http-address", "nowhere"], {"CODER_AIBRIDGE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --http-address: invalid address 'nowhere' "
                                     "(use HOST:PORT, e.g. 127.0.0.1:3000)")


async def test_graceful_shutdown_and_restart_keeps_data(database: Database) -> None:
    first = await ServerProcess(database).start()
    token = first.create_user("kate")
    assert first.stop() == 0
    assert "stopped" in first.output()
    second = await ServerProcess(database).start()
    try:
        assert second.admin_token == ""           # printed on the very first start only
        status, me = await Client(second.url, token).get("/api/v2/users/me")
        assert status == 200 and me["username"] == "kate"
    finally:
        second.stop()
