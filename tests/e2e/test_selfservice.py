"""Self-service (issue 21, items 3-5) through a real server on SQLite and PostgreSQL: users' own tokens
(lifetime cap, last use), the owners' user management REST, and ``aibridge login`` / ``logout``."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa

from aibridge.config.settings import postgres_async_url
from aibridge.store import groups
from aibridge.store.db import create_engine
from aibridge.store.schema import users
from tests.e2e.conftest import bridge_env
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess, base_env, run_cli, wait_for

CHAT_MODEL = "gpt-5-scenario-simple"


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


def database_url(db: Database) -> str:
    return postgres_async_url(db.postgres.url) if db.postgres else f"sqlite+aiosqlite:///{db.data_dir / 'aibridge.db'}"


async def add_to_group(db: Database, username: str, group: str) -> None:
    """Group membership as OIDC sync or the groups API would make it (written straight to the database)."""
    engine = create_engine(database_url(db))
    try:
        async with engine.begin() as conn:
            made = await groups.get_group(conn, group) or await groups.create_group(conn, group)
            user_id = (await conn.execute(sa.select(users.c.id).where(users.c.username == username))).scalar_one()
            await groups.add_members(conn, made, [user_id])
    finally:
        await engine.dispose()


async def bridge_call(server: ServerProcess, token: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{server.url}/api/v2/aibridge/openai/v1", api_key=token,
                                max_retries=0, timeout=30)
    await client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}])


def parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# ---------------------------------------------------------------- tokens (item 3)

async def test_member_creates_lists_and_revokes_own_tokens(server: ServerProcess) -> None:
    alice = Client(server.url, server.create_user("sam"))
    server.create_user("tess")
    status, made = await alice.post("/api/v2/users/me/keys/tokens", {"token_name": "laptop", "lifetime": "7d"})
    assert status == 201, made
    assert made["token_name"] == "laptop"
    assert abs(parse(made["expires_at"]) - dt.datetime.now(dt.UTC) - dt.timedelta(days=7)) < dt.timedelta(minutes=5)
    # The set-up lines come with the token, as `aibridge env` prints them.
    setup = {s["id"]: s["text"] for s in made["setup"]}
    assert set(setup) == {"claude-code", "codex", "openai", "anthropic", "proxy"}
    assert f"export ANTHROPIC_BASE_URL={server.url}/api/v2/aibridge/anthropic" in setup["claude-code"]
    assert f"export ANTHROPIC_API_KEY={made['key']}" in setup["claude-code"]
    assert f"export AIBRIDGE_TOKEN={made['key']}" in setup["codex"]
    assert "HTTPS_PROXY" in setup["proxy"] and made["key"] in setup["proxy"]
    cli = run_cli(["env", "codex", "--url", server.url, "--token", made["key"]], {})
    assert cli.stdout.rstrip("\n") == setup["codex"]          # one source: they never drift

    status, listed = await alice.get("/api/v2/users/me/keys/tokens")
    assert status == 200
    row = next(k for k in listed if k["id"] == made["id"])
    assert row["token_name"] == "laptop" and row["last_used_at"] is None and row["revoked"] is False
    await bridge_call(server, made["key"])

    # A member may not look at, make or revoke another user's tokens.
    for method, path in (("GET", "/api/v2/users/tess/keys/tokens"), ("POST", "/api/v2/users/tess/keys/tokens"),
                         ("DELETE", f"/api/v2/users/tess/keys/{made['id']}")):
        status, body = await alice.request(method, path, {} if method == "POST" else None)
        assert status == 403, (method, path, body)
    status, _ = await alice.request("DELETE", f"/api/v2/users/me/keys/{made['id']}")
    assert status == 204
    with pytest.raises(openai.PermissionDeniedError, match="revoked"):
        await bridge_call(server, made["key"])


async def test_owner_sees_and_revokes_anyones_tokens(server: ServerProcess) -> None:
    owner = Client(server.url, server.admin_token)
    token = server.create_user("uma")
    status, listed = await owner.get("/api/v2/users/uma/keys/tokens")
    assert status == 200 and len(listed) == 1
    status, _ = await owner.request("DELETE", f"/api/v2/users/uma/keys/{listed[0]['id']}")
    assert status == 204
    status, body = await Client(server.url, token).get("/api/v2/users/me")
    assert status == 403 and "revoked" in body["message"]


async def test_lifetime_is_capped_by_max_token_lifetime(server: ServerProcess) -> None:
    member = Client(server.url, server.create_user("vic"))
    for too_long in ("721h", "31d", 720 * 3600 + 1):
        status, body = await member.post("/api/v2/users/me/keys/tokens", {"lifetime": too_long})
        assert status == 400, (too_long, body)
        assert "CODER_MAX_TOKEN_LIFETIME" in body["message"] and "720h" in body["message"]
    status, made = await member.post("/api/v2/users/me/keys/tokens", {"lifetime": "720h"})
    assert status == 201, made
    # An owner is held to it too through the API (the database CLI is the way around it).
    status, body = await Client(server.url, server.admin_token).post("/api/v2/users/vic/keys/tokens",
                                                                     {"lifetime": "1000h"})
    assert status == 400 and "CODER_MAX_TOKEN_LIFETIME" in body["message"]


async def test_a_shorter_cap_is_also_the_default_lifetime(database: Database) -> None:
    server = await ServerProcess(database, env={"CODER_MAX_TOKEN_LIFETIME": "2h"}).start()
    try:
        status, made = await Client(server.url, server.admin_token).post("/api/v2/users/me/keys/tokens", {})
        assert status == 201, made
        assert parse(made["expires_at"]) - dt.datetime.now(dt.UTC) < dt.timedelta(hours=2, minutes=1)
        status, body = await Client(server.url, server.admin_token).post("/api/v2/users/me/keys/tokens",
                                                                         {"lifetime": "3h"})
        assert status == 400 and "2h" in body["message"]
    finally:
        server.stop()


async def test_last_used_at_moves_after_use(server: ServerProcess) -> None:
    token = server.create_user("wes")
    owner = Client(server.url, server.admin_token)

    async def last_used() -> str | None:
        status, listed = await owner.get("/api/v2/users/wes/keys/tokens")
        assert status == 200
        value: str | None = listed[0]["last_used_at"]
        return value

    assert await last_used() is None
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    await bridge_call(server, token)
    stamp = await wait_for(last_used, timeout=10)
    assert stamp is not None, "last_used_at was not recorded"
    assert before <= parse(stamp) <= dt.datetime.now(dt.UTC)


async def test_env_endpoint_renders_a_client_with_a_placeholder(server: ServerProcess) -> None:
    member = Client(server.url, server.create_user("xia"))
    status, body = await member.get("/api/v2/aibridge/env/claude-code")
    assert status == 200
    assert f"{server.url}/api/v2/aibridge/anthropic" in body["text"] and "<your AI Bridge token>" in body["text"]
    status, body = await member.get("/api/v2/aibridge/env/claude-code?proxy=1")
    assert status == 200 and "HTTPS_PROXY" in body["text"]
    status, body = await member.get("/api/v2/aibridge/env/emacs")
    assert status == 404 and "unknown client" in body["message"]


# ---------------------------------------------------------------- users (item 5)

async def test_owner_lists_searches_and_sees_groups(server: ServerProcess) -> None:
    server.create_user("yara")
    server.create_user("yusuf")
    await add_to_group(server.db, "yara", "platform")
    owner = Client(server.url, server.admin_token)
    status, body = await owner.get("/api/v2/users?q=YA")
    assert status == 200
    assert [u["username"] for u in body["users"]] == ["yara"] and body["count"] == 1
    assert body["users"][0]["groups"] == ["platform"]


async def test_role_change_is_for_owners_and_applies_at_once(server: ServerProcess) -> None:
    zed_token = server.create_user("zed")
    auditor = Client(server.url, server.create_user("aud", "auditor"))
    member = Client(server.url, server.create_user("mem"))
    assert (await Client(server.url, zed_token).get("/api/v2/users/me"))[1]["role"] == "member"  # now cached
    for who in (member, auditor):
        for method, path, body in (("PUT", "/api/v2/users/zed/roles", {"roles": ["owner"]}),
                                   ("POST", "/api/v2/users/zed/status/suspend", None),
                                   ("DELETE", "/api/v2/users/zed", None)):
            status, answer = await who.request(method, path, body)
            assert status == 403, (method, path, answer)
    owner = Client(server.url, server.admin_token)
    status, answer = await owner.request("PUT", "/api/v2/users/zed/roles", {"roles": ["auditor"]})
    assert status == 200 and answer["role"] == "auditor", answer
    assert (await Client(server.url, zed_token).get("/api/v2/users/me"))[1]["role"] == "auditor"
    status, _ = await Client(server.url, zed_token).get("/api/v2/users")       # auditors read users
    assert status == 200
    status, answer = await owner.request("PUT", "/api/v2/users/zed/roles", {"roles": []})
    assert status == 200 and answer["role"] == "member"
    for bad in ({"roles": ["root"]}, {"roles": "owner"}, {"roles": ["owner", "auditor"]}, {}):
        status, answer = await owner.request("PUT", "/api/v2/users/zed/roles", bad)
        assert status == 400, (bad, answer)
    status, answer = await owner.request("PUT", "/api/v2/users/me/roles", {"roles": ["member"]})
    assert status == 400 and "your own role" in answer["message"]


# ---------------------------------------------------------------- aibridge login (item 4)

def cli(args: list[str], home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI with its config directory in ``home`` (and no browser to open)."""
    return subprocess.run([sys.executable, "-m", "aibridge", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False, env=base_env({"XDG_CONFIG_HOME": str(home), "BROWSER": "false"}))


async def test_login_stores_the_session_and_the_clients_use_it(server: ServerProcess, tmp_path: Path) -> None:
    signed_in = server.create_user("lena")
    # What the cli-auth page does for the signed-in user: a token named "cli".
    status, made = await Client(server.url, signed_in).post("/api/v2/users/me/keys/tokens", {"token_name": "cli"})
    assert status == 201
    done = cli(["login", server.url, "--no-open"], tmp_path, stdin=made["key"] + "\n")
    assert done.returncode == 0, done.stderr
    assert f"{server.url}/cli-auth" in done.stderr and "signed in" in done.stderr and "lena" in done.stderr
    assert made["key"] not in done.stdout + done.stderr
    path = tmp_path / "aibridge" / "session"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"url": server.url, "token": made["key"]}
    assert cli(["login", "token"], tmp_path).stdout == made["key"] + "\n"

    # `aibridge env` without --url/--token: the printed lines work through the bridge.
    printed = cli(["env", "openai"], tmp_path)
    assert printed.returncode == 0, printed.stderr
    values = dict(line.removeprefix("export ").split("=", 1) for line in printed.stdout.splitlines()
                  if line.startswith("export "))
    assert values == {"OPENAI_BASE_URL": f"{server.url}/api/v2/aibridge/openai/v1", "OPENAI_API_KEY": made["key"]}
    claude = cli(["env", "claude-code"], tmp_path)
    assert f"export ANTHROPIC_API_KEY={made['key']}" in claude.stdout
    client = openai.AsyncOpenAI(base_url=values["OPENAI_BASE_URL"], api_key=values["OPENAI_API_KEY"], max_retries=0)
    await client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}])
    # The REST clients too.
    listed = cli(["interceptions", "list", "--limit", "5"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    # The stored token never goes to another server.
    other = cli(["interceptions", "list", "--url", "http://127.0.0.1:9"], tmp_path)
    assert other.returncode == 2 and "no API token for http://127.0.0.1:9" in other.stderr

    out = cli(["logout"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert not path.exists()
    status, body = await Client(server.url, made["key"]).get("/api/v2/users/me")
    assert status == 403 and "revoked" in body["message"]
    again = cli(["logout"], tmp_path)
    assert again.returncode == 2 and "not signed in" in again.stderr
    missing = cli(["interceptions", "list"], tmp_path)
    assert missing.returncode == 2 and "aibridge login URL" in missing.stderr


async def test_login_errors_are_one_line(server: ServerProcess, tmp_path: Path) -> None:
    refused = cli(["login", server.url, "--token", "abcdefghij-" + "x" * 30], tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"error: {server.url} refused the token: invalid API token"
    unreachable = cli(["login", "http://127.0.0.1:9", "--token", "t"], tmp_path)
    assert unreachable.returncode == 2 and len(unreachable.stderr.strip().splitlines()) == 1
    assert unreachable.stderr.startswith("error: cannot reach http://127.0.0.1:9")
    assert not (tmp_path / "aibridge" / "session").exists()
    assert cli(["login", "token"], tmp_path).returncode == 2
    # A session file created wider by something else is tightened when written.
    (tmp_path / "aibridge").mkdir(mode=0o755)
    (tmp_path / "aibridge" / "session").write_text("{}")
    os.chmod(tmp_path / "aibridge" / "session", 0o644)
    ok = cli(["login", server.url, "--token", server.create_user("nora")], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert stat.S_IMODE((tmp_path / "aibridge" / "session").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "aibridge").stat().st_mode) == 0o700
