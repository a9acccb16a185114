"""Issue 11: bad input on the REST API, names, the database settings, the first owner and
off-boarding, against real server processes and the real CLI (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from tests.harness import Client, Database, ServerProcess, free_port, run_cli


@pytest.fixture(scope="module")
async def server(module_database: Database) -> AsyncIterator[ServerProcess]:
    proc = await ServerProcess(module_database, env={"CODER_AIBRIDGE_SHUTDOWN_GRACE": "5s"}).start()
    yield proc
    proc.stop()


# ---------------------------------------------------------------- 10: no 500 on odd numbers

async def test_odd_numbers_are_400_not_500(server: ServerProcess) -> None:
    owner = Client(server.url, server.admin_token)
    for lifetime in ("99999999999999999999d", "1e999s", 10**18):
        status, body = await owner.post("/api/v2/users/me/keys/tokens", {"lifetime": lifetime})
        assert status == 400 and "lifetime" in body["message"], (lifetime, status, body)
    status, body = await owner.request("POST", "/api/v2/users/me/keys/tokens", raw=b'{"lifetime": 1' + b"0" * 40 + b"}")
    assert status == 400, body
    for path in ("/api/v2/aibridge/interceptions?limit=²", "/api/v2/aibridge/sessions?limit=²",
                 "/api/v2/aibridge/sessions?offset=²", "/api/v2/aibridge/sessions?offset=99999999999999999999999",
                 "/api/v2/aibridge/sessions?offset=-1", "/api/v2/aibridge/interceptions?limit=٣"):
        status, body = await owner.get(path)
        assert status == 400 and body["message"], (path, status, body)
    cli = server.cli("tokens", "create", "admin", "--lifetime", "99999999999999999999d")
    assert cli.returncode == 2 and "at most 3650d" in cli.stderr and "Traceback" not in cli.stderr
    assert "Traceback" not in server.output()


# ---------------------------------------------------------------- 12: names that cannot be confused

async def test_ambiguous_usernames_and_bad_emails_are_refused(server: ServerProcess) -> None:
    owner = Client(server.url, server.admin_token)
    assert (await owner.post("/api/v2/users", {"username": "Grace"}))[0] == 201
    for name in ("me", "ME", "grace", "GRACE", "0b3c7a5e-8f7e-4f54-9d6b-3b9f0c1d2e3f"):
        status, body = await owner.post("/api/v2/users", {"username": name})
        assert status in (400, 409), (name, status, body)
        assert name in body["message"]
    status, body = await owner.post("/api/v2/users", {"username": "heidi", "email": "notanemail"})
    assert status == 400 and "email" in body["message"]
    assert (await owner.post("/api/v2/users", {"username": "heidi", "email": "heidi@example.com"}))[0] == 201
    for args in (["me"], ["Heidi"], ["6f1d2c3b-1111-4222-8333-944455556666"], ["ivan", "--email", "notanemail"]):
        made = server.cli("users", "create", *args)
        assert made.returncode == 2, (args, made.stdout)
        assert made.stderr.startswith("error: ") and len(made.stderr.strip().splitlines()) == 1, made.stderr


# ---------------------------------------------------------------- 15: the database cannot be reached

def _closed_port() -> int:
    return free_port()


@pytest.mark.parametrize("url", [
    f"postgresql://postgres@127.0.0.1:{_closed_port()}/aibridge",
    "postgresql://postgres@no-such-host.invalid:5432/aibridge",
    "postgresql://no_such_role_x@127.0.0.1:5432/postgres",
])
def test_unreachable_postgres_is_one_line_and_exit_2(tmp_path: object, url: str) -> None:
    if "127.0.0.1:5432" in url:
        with socket.socket() as probe:           # the unknown role needs a PostgreSQL to refuse it
            if probe.connect_ex(("127.0.0.1", 5432)) != 0:
                pytest.fail("PostgreSQL is not running on 127.0.0.1:5432")
    env = {"CODER_AIBRIDGE_DATA_DIR": str(tmp_path), "CODER_PG_CONNECTION_URL": url,
           "CODER_HTTP_ADDRESS": f"127.0.0.1:{free_port()}"}
    for args in (["server"], ["users", "list"], ["tokens", "create", "admin"], ["migrate"]):
        result = run_cli(args, env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (args, result.stderr)
        assert len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith("error: --postgres-url (CODER_PG_CONNECTION_URL): cannot connect to ")
        assert result.stdout == ""


# ---------------------------------------------------------------- 16: the first owner is never lost

async def test_failed_bind_does_not_eat_the_owner_token(database: Database) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        failed = run_cli(["server"], {**database.env(), "CODER_HTTP_ADDRESS": f"127.0.0.1:{port}"})
    assert failed.returncode != 0 and "cannot listen" in failed.stderr
    assert "shown this once" not in failed.stdout
    listed = run_cli(["users", "list"], database.env())
    assert listed.returncode == 0 and "admin" not in listed.stdout     # no owner whose token nobody saw
    server = await ServerProcess(database).start()
    try:
        assert server.admin_token, server.output()                      # the next start prints it
        assert (await Client(server.url, server.admin_token).get("/api/v2/users/me"))[1]["role"] == "owner"
    finally:
        server.stop()


async def test_users_created_before_the_first_start_still_get_an_owner(database: Database) -> None:
    made = run_cli(["users", "create", "early"], database.env())
    assert made.returncode == 0
    assert "no active owner exists" in made.stderr and "--role owner" in made.stderr
    label = "SQLite " if database.backend == "sqlite" else "PostgreSQL "
    assert f"database: {label}" in made.stderr                          # which database it wrote to
    server = await ServerProcess(database).start()
    try:
        assert server.admin_token, server.output()
        status, me = await Client(server.url, server.admin_token).get("/api/v2/users/me")
        assert status == 200 and me["role"] == "owner"
    finally:
        server.stop()


# ---------------------------------------------------------------- 17: off-boarding

async def test_off_boarding_over_rest(server: ServerProcess) -> None:
    owner = Client(server.url, server.admin_token)
    token = server.create_user("leaver")
    leaver = Client(server.url, token)
    assert (await leaver.get("/api/v2/users/me"))[0] == 200
    # Only owners, and never themselves.
    assert (await leaver.post("/api/v2/users/leaver/status/suspend"))[0] == 403
    auditor = Client(server.url, server.create_user("aud1", role="auditor"))
    assert (await auditor.post("/api/v2/users/leaver/status/suspend"))[0] == 403
    assert (await auditor.request("DELETE", "/api/v2/users/leaver"))[0] == 403
    assert (await owner.post("/api/v2/users/admin/status/suspend"))[0] == 400
    assert (await owner.post("/api/v2/users/nobody-x/status/suspend"))[0] == 404

    status, user = await owner.post("/api/v2/users/leaver/status/suspend")
    assert status == 200 and user["status"] == "suspended"
    status, body = await leaver.get("/api/v2/users/me")                 # at once on this process
    assert status == 403 and "suspended" in body["message"]
    status, user = await owner.post("/api/v2/users/leaver/status/activate")
    assert status == 200 and user["status"] == "active"
    assert (await leaver.get("/api/v2/users/me"))[0] == 200

    assert (await owner.request("DELETE", "/api/v2/users/leaver"))[0] == 204
    assert (await leaver.get("/api/v2/users/me"))[0] == 403
    assert (await owner.get("/api/v2/users/leaver"))[0] == 404


async def test_off_boarding_with_the_cli_takes_effect_within_a_second(server: ServerProcess) -> None:
    token = server.create_user("quitter")
    client = Client(server.url, token)
    assert (await client.get("/api/v2/users/me"))[0] == 200          # now cached by the server
    done = server.cli("users", "suspend", "quitter")
    assert done.returncode == 0 and "suspended user quitter" in done.stdout, done.stderr
    assert "database: " in done.stderr
    listed = server.cli("users", "list")
    assert any(line.split()[:3] == ["quitter", "member", "suspended"] for line in listed.stdout.splitlines())
    await asyncio.sleep(1.0)                                          # DESIGN §2.6: within 1 s
    status, body = await client.get("/api/v2/users/me")
    assert status == 403 and "suspended" in body["message"]
    assert server.cli("users", "activate", "quitter").returncode == 0
    assert server.cli("users", "delete", "quitter").returncode == 0
    assert server.cli("users", "delete", "quitter").returncode == 2
