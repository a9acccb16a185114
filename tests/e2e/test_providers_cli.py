"""``aibridge providers list|show|create|update|delete`` (issue 23 §3) against a real server.

The CLI is a REST client of ``/api/v2/ai/providers``: keys go in from a file or stdin (or the
command line), only ever come back masked, and the provider it creates serves traffic at once with
its own key. Errors are one line (``error: …``) with the server's message and exit code 2.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from aibridge.cli.main import cli
from tests.e2e.conftest import bridge_env
from tests.e2e.test_runtime_providers import SECOND_KEY, TEAM_KEY, chat
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess, base_env, free_port, run_cli


@dataclass
class Env:
    server: ServerProcess
    team: FakeUpstream            # the upstream of the created provider: it accepts only its key
    owner: str
    auditor: str
    member: str

    def cli(self, token: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.server.env, "CODER_URL": self.server.url, "CODER_SESSION_TOKEN": token}
        if stdin is None:
            return run_cli(list(args), env)
        return subprocess.run([sys.executable, "-m", "aibridge", *args], env=base_env(env), input=stdin,
                              capture_output=True, text=True, timeout=60, check=False)

    async def chat(self, provider: str) -> int:
        return (await chat(self.server, provider, self.member))[0]


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    """SQLite only: the CLI is a client of the REST API (the API's own tests run on both databases)."""
    async with Database("sqlite") as db, FakeUpstream() as central, FakeUpstream(openai_key=TEAM_KEY) as team:
        server = await ServerProcess(db, env=bridge_env(central)).start()
        try:
            yield Env(server, team, server.admin_token, server.create_user("pcaud", "auditor"),
                      server.create_user("pcmember"))
        finally:
            server.stop()


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def _row(listing: str, name: str) -> list[str]:
    return next(line.split() for line in listing.splitlines() if line.startswith(name + " "))


def _refused(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert fragment in lines[0], lines[0]


async def test_create_list_update_delete(env: Env, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# the team's key\n{TEAM_KEY}\n\n")
    made = _ok(env.cli(env.owner, "providers", "create", "cli-team", "--type", "openai", "--base-url",
                       f"{env.team.url}/v1/", "--api-key-file", str(keys), "--display-name", "CLI team"))
    assert made.startswith("created provider cli-team (openai, enabled) id=") and "keys: sk-…WXYZ" in made
    assert await env.chat("cli-team") == 200                               # served at once, with its key
    assert env.team.requests[-1].headers["Authorization"] == f"Bearer {TEAM_KEY}"

    # Listed beside the configured ones, the keys masked; auditors read, never the key.
    listing = _ok(env.cli(env.auditor, "providers", "list"))
    assert listing.splitlines()[0].split() == ["NAME", "TYPE", "SOURCE", "STATUS", "KEYS", "BASE-URL"]
    assert _row(listing, "cli-team") == ["cli-team", "openai", "api", "enabled", "sk-…WXYZ", f"{env.team.url}/v1/"]
    assert _row(listing, "openai")[:5] == ["openai", "openai", "config", "enabled", "sk-…tral"]
    as_json = orjson.loads(_ok(env.cli(env.owner, "providers", "list", "--format", "json")))
    assert {p["name"] for p in as_json} >= {"openai", "anthropic", "cli-team"}
    shown = orjson.loads(_ok(env.cli(env.owner, "providers", "show", "cli-team")))
    assert shown["display_name"] == "CLI team" and shown["source"] == "api"
    for text in (listing, orjson.dumps(as_json).decode(), orjson.dumps(shown).decode()):
        assert TEAM_KEY not in text and "sk-openai-central" not in text

    # Disabled: 403 on its route, which the error message says how to undo; enabled again: served.
    assert "(openai, disabled)" in _ok(env.cli(env.owner, "providers", "update", "cli-team", "--disable"))
    status, body = await Client(env.server.url, env.member).post(
        "/api/v2/aibridge/cli-team/v1/chat/completions", {"model": "gpt-4.1", "messages": []})
    assert status == 403 and "aibridge providers update cli-team --enable" in body["error"]["message"]
    assert "(openai, enabled)" in _ok(env.cli(env.owner, "providers", "update", "cli-team", "--enable"))
    assert await env.chat("cli-team") == 200

    # Keys: one added from stdin, the old one removed by its masked form → the upstream sees the new one.
    env.team.openai_key = SECOND_KEY
    updated = _ok(env.cli(env.owner, "providers", "update", "cli-team", "--add-key-file", "-",
                          "--remove-key", "sk-…WXYZ", stdin=SECOND_KEY + "\n"))
    assert "keys: sk-…abcd" in updated and SECOND_KEY not in updated
    assert await env.chat("cli-team") == 200
    assert env.team.requests[-1].headers["Authorization"] == f"Bearer {SECOND_KEY}"
    kept = orjson.loads(_ok(env.cli(env.owner, "providers", "show", "cli-team")))["api_keys"][0]["id"]
    updated = _ok(env.cli(env.owner, "providers", "update", "cli-team", "--add-key", TEAM_KEY,
                          "--display-name", "Renamed"))
    assert "keys: sk-…abcd, sk-…WXYZ" in updated                           # kept first, then the new one
    updated = _ok(env.cli(env.owner, "providers", "update", "cli-team", "--remove-key", kept))  # by id
    assert "keys: sk-…WXYZ" in updated and "sk-…abcd" not in updated
    refused = await _many(env, env.owner, [["update", "cli-team", "--remove-key", "sk-…nope"],
                                           ["update", "cli-team", "--remove-key", "sk-…WXYZ"]])
    _refused(refused[0], "has no key 'sk-…nope'")
    _refused(refused[1], "needs an API key")                               # the last one stays
    shown = orjson.loads(_ok(env.cli(env.owner, "providers", "show", "cli-team")))
    assert [k["masked"] for k in shown["api_keys"]] == ["sk-…WXYZ"] and shown["display_name"] == "Renamed"

    # Deleted: its route is gone.
    assert _ok(env.cli(env.owner, "providers", "delete", "cli-team")) == "deleted provider cli-team\n"
    assert await env.chat("cli-team") == 404
    assert (await Client(env.server.url, env.owner).get("/api/v2/ai/providers/cli-team"))[0] == 404


async def _many(env: Env, token: str, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands at once (each CLI start imports for about a second)."""
    return list(await asyncio.gather(*(asyncio.to_thread(env.cli, token, "providers", *c) for c in commands)))


async def test_errors_are_one_line_with_the_servers_message(env: Env) -> None:
    base = ["--type", "openai", "--base-url", f"{env.team.url}/v1/", "--api-key", TEAM_KEY]
    expected = {        # command → a fragment of its one line
        ("create", "Bad_Name", *base): "400 from POST",
        ("create", "bad-setting", *base, "--setting", "region=x"): "settings.region: not a setting",
        ("update", "openai", "--disable"): "read-only here: change it where it is defined",
        ("show", "nosuch"): "404 from GET",
    }
    for done, fragment in zip(await _many(env, env.owner, [list(c) for c in expected]), expected.values(),
                              strict=True):
        _refused(done, fragment)
    by_auditor, by_member = await asyncio.gather(
        asyncio.to_thread(env.cli, env.auditor, "providers", "create", "by-auditor", *base),
        asyncio.to_thread(env.cli, env.member, "providers", "list"))
    _refused(by_auditor, "403 from POST")
    _refused(by_member, "403 from GET")
    assert (await Client(env.server.url, env.owner).get("/api/v2/ai/providers/by-auditor"))[0] == 404


@pytest.mark.parametrize(("args", "fragment"), [
    (["create", "x", "--type", "openai", "--setting", "novalue"], "--setting: 'novalue' is not KEY=VALUE"),
    (["create", "x", "--type", "openai", "--api-key-file", "{empty}"], "holds no key"),
    (["update", "x"], "nothing to change"),
    (["update", "x", "--setting", "a=1", "--unset-setting", "a"], "both name 'a'"),
])
def test_bad_arguments_fail_before_any_request(tmp_path: Path, args: list[str], fragment: str) -> None:
    """In process (the same command, no process start): no server listens at the URL, so a request would
    fail with 'cannot reach' instead."""
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n\n")
    done = CliRunner().invoke(cli, ["providers", *(a.format(empty=empty) for a in args)],
                              env={"CODER_URL": f"http://127.0.0.1:{free_port()}", "CODER_SESSION_TOKEN": "t"})
    assert done.exit_code == 2 and done.stderr.startswith("error: ") and fragment in done.stderr, done.output
    assert len(done.stderr.strip().splitlines()) == 1 and not done.stdout
