"""``aibridge env CLIENT``: its output parses, and what it prints works through a real bridge.

The shell lines are evaluated by bash and the official SDKs then read the variables themselves;
the Codex TOML is parsed with tomllib; the JSON snippets (Zed, OpenCode) and the UI fields (Cline,
Roo Code) give the base URLs the SDK calls are pointed at. Every call must be recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest

from aibridge.bridge.client_setup import CLIENTS, PLACEHOLDER
from tests.e2e.conftest import bridge_env
from tests.fakes.upstream import FakeUpstream, expected_usage
from tests.harness import Client, Database, ServerProcess, base_env, free_port, run_cli, wait_for

ALL_CLIENTS = ("claude-code", "codex", "openai", "anthropic", "zed", "cline", "roo", "opencode")
TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")
STEP = re.compile(r"^# (\d+)\. ", re.MULTILINE)
EXPORT = re.compile(r"^export [A-Z_][A-Z0-9_]*=", re.MULTILINE)
URL = "https://bridge.example.com"
TOKEN = "abcdefghij-SECRETsecretSECRETsecret12"


@dataclass
class Bridge:
    server: ServerProcess
    fake: FakeUpstream


@pytest.fixture(scope="module")
async def env_bridge(module_database: Database) -> AsyncIterator[Bridge]:
    fake = FakeUpstream()
    await fake.start()
    server = await ServerProcess(module_database, env=bridge_env(fake)).start()
    try:
        yield Bridge(server, fake)
    finally:
        server.stop()
        await fake.stop()


# ------------------------------------------------------------------ parsing the output

def aibridge_env(*args: str, env: dict[str, str] | None = None) -> str:
    done = run_cli(["env", *args], env or {})
    assert done.returncode == 0, done.stderr
    return done.stdout


def shell_exports(text: str) -> dict[str, str]:
    """What bash ends up with after ``eval``-ing the export lines of ``text``."""
    script = "\n".join(line for line in text.splitlines() if EXPORT.match(line))
    names = re.findall(r"^export ([A-Z_][A-Z0-9_]*)=", script, re.MULTILINE)
    dump = "; ".join(f'printf "%s\\0%s\\0" {n} "${n}"' for n in names)
    done = subprocess.run(["bash", "-c", f'eval "$SNIPPET"; {dump}'], env={"SNIPPET": script, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=10, check=True)
    parts = done.stdout.split("\0")[:-1]
    return dict(zip(parts[::2], parts[1::2], strict=True))


def steps(text: str) -> dict[int, str]:
    """The numbered parts ("# 1. ...", "# 2. ...") of a snippet, each without its comment lines."""
    marks = list(STEP.finditer(text))
    found: dict[int, str] = {}
    for n, mark in enumerate(marks):
        end = marks[n + 1].start() if n + 1 < len(marks) else len(text)
        body = "\n".join(line for line in text[mark.start():end].splitlines() if not line.startswith("#"))
        found[int(mark.group(1))] = body.strip()
    return found


def ui_fields(text: str) -> dict[str, dict[str, str]]:
    """Cline / Roo Code: ``{section: {field: value}}`` from the indented ``Field: value`` lines."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if line and not line.startswith(" ") and ":" not in line:
            current = sections.setdefault(line.strip(), {})
        elif line.startswith("  ") and current is not None:
            name, _, value = line.strip().partition(":")
            current[name] = value.strip()
    return sections


@dataclass(frozen=True)
class Endpoint:
    kind: str       # "openai" | "anthropic"
    base_url: str   # what the SDK / tool is given
    token: str


def endpoints(client: str, text: str) -> list[Endpoint]:
    """Every (API, base URL, key) a developer following the output would configure."""
    if client in ("claude-code", "anthropic"):
        env = shell_exports(text)
        return [Endpoint("anthropic", env["ANTHROPIC_BASE_URL"], env["ANTHROPIC_API_KEY"])]
    if client == "openai":
        env = shell_exports(text)
        return [Endpoint("openai", env["OPENAI_BASE_URL"], env["OPENAI_API_KEY"])]
    if client == "codex":
        config = tomllib.loads(steps(text)[1])
        assert config["model_provider"] == "aibridge"
        provider = config["model_providers"]["aibridge"]
        assert provider["wire_api"] == "responses"
        env = shell_exports(text)
        return [Endpoint("openai", provider["base_url"], env[provider["env_key"]])]
    if client == "zed":
        models = json.loads(steps(text)[1])["language_models"]
        env = shell_exports(text)
        return [Endpoint("anthropic", models["anthropic"]["api_url"], env["ANTHROPIC_API_KEY"]),
                Endpoint("openai", models["openai"]["api_url"], env["OPENAI_API_KEY"])]
    if client == "opencode":
        config = json.loads(steps(text)[1])
        assert config["$schema"] == "https://opencode.ai/config.json"
        env = shell_exports(text)
        found = []
        for kind in ("anthropic", "openai"):
            options = config["provider"][kind]["options"]
            var = re.fullmatch(r"\{env:([A-Z_]+)\}", options["apiKey"])
            assert var, options
            # OpenCode's Anthropic provider (the AI SDK) takes a base URL that already ends in /v1.
            base = options["baseURL"].removesuffix("/v1") if kind == "anthropic" else options["baseURL"]
            found.append(Endpoint(kind, base, env[var.group(1)]))
        return found
    fields = ui_fields(text)          # cline, roo
    assert fields["Anthropic"]["Use custom base URL"] == "checked"
    return [Endpoint("anthropic", fields["Anthropic"]["Base URL"], fields["Anthropic"]["Anthropic API Key"]),
            Endpoint("openai", fields["OpenAI Compatible"]["Base URL"], fields["OpenAI Compatible"]["API Key"])]


# ------------------------------------------------------------------ output shape, no server needed

@pytest.mark.parametrize("client", ALL_CLIENTS)
def test_every_client_prints_parseable_settings(client: str) -> None:
    assert set(CLIENTS) == set(ALL_CLIENTS)
    text = aibridge_env(client, "--url", URL + "/", "--token", TOKEN)
    found = endpoints(client, text)
    assert found
    for ep in found:
        assert ep.token == TOKEN
        want = f"{URL}/api/v2/aibridge/anthropic" if ep.kind == "anthropic" else f"{URL}/api/v2/aibridge/openai/v1"
        assert ep.base_url == want, (client, ep)

    # Without a token the output says where it goes, and stays valid (the shell sees the literal).
    blank = aibridge_env(client, "--url", URL)
    assert TOKEN not in blank
    assert all(ep.token == PLACEHOLDER for ep in endpoints(client, blank))


def test_shell_only_clients_are_exactly_exports() -> None:
    text = aibridge_env("claude-code", "--url", URL, "--token", TOKEN)
    assert shell_exports(text) == {"ANTHROPIC_BASE_URL": f"{URL}/api/v2/aibridge/anthropic",
                                   "ANTHROPIC_API_KEY": TOKEN}
    for client in ("claude-code", "openai", "anthropic"):
        lines = aibridge_env(client, "--url", URL, "--token", TOKEN).splitlines()
        assert all(line.startswith(("#", "export ")) for line in lines), lines


def test_codex_output_is_a_config_block_plus_the_token() -> None:
    text = aibridge_env("codex", "--url", URL, "--token", TOKEN)
    assert "OPENAI_BASE_URL" in text                     # it says why Codex needs the TOML block
    config = tomllib.loads(steps(text)[1])
    assert config == {"model_provider": "aibridge", "model_providers": {"aibridge": {
        "name": "AI Bridge", "base_url": f"{URL}/api/v2/aibridge/openai/v1", "env_key": "AIBRIDGE_TOKEN",
        "wire_api": "responses"}}}
    assert shell_exports(text) == {"AIBRIDGE_TOKEN": TOKEN}


def test_server_url_resolution() -> None:
    def url_in(env: dict[str, str], *args: str) -> str:
        return shell_exports(aibridge_env("openai", *args, env=env))["OPENAI_BASE_URL"].removesuffix(
            "/api/v2/aibridge/openai/v1")

    assert url_in({}) == "http://127.0.0.1:3000"
    assert url_in({"CODER_HTTP_ADDRESS": "127.0.0.1:4567"}) == "http://127.0.0.1:4567"
    assert url_in({"CODER_ACCESS_URL": "https://ai.corp.example/"}) == "https://ai.corp.example"
    assert url_in({"CODER_ACCESS_URL": "https://ai.corp.example", "CODER_URL": "http://other:1"}) == "http://other:1"
    assert url_in({"CODER_URL": "http://other:1"}, "--url", "http://flag:2/") == "http://flag:2"


def test_token_from_environment() -> None:
    text = aibridge_env("anthropic", "--url", URL, env={"CODER_SESSION_TOKEN": TOKEN})
    assert shell_exports(text)["ANTHROPIC_API_KEY"] == TOKEN


def test_unknown_client_exits_2_with_the_valid_ones() -> None:
    done = run_cli(["env", "cursor", "--url", URL], {})
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for client in ALL_CLIENTS:
        assert client in lines[0]


def test_create_token_errors_are_one_line() -> None:
    done = run_cli(["env", "codex", "--create-token", "--url", URL], {})
    assert done.returncode == 2 and "CODER_SESSION_TOKEN" in done.stderr and "Traceback" not in done.stderr
    port = free_port()                                  # nothing listens there
    done = run_cli(["env", "codex", "--create-token", "--url", f"http://127.0.0.1:{port}", "--token", TOKEN], {})
    assert done.returncode == 2 and "cannot reach" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------ using the output against a real bridge
async def make_user(server: ServerProcess, username: str) -> str:
    """A member and a token for it, through the REST API as the first owner (faster than the CLI)."""
    owner = Client(server.url, server.admin_token)
    status, body = await owner.post("/api/v2/users", {"username": username, "role": "member"})
    assert status == 201, body
    status, body = await owner.post(f"/api/v2/users/{username}/keys/tokens", {"lifetime": "1h"})
    assert status == 201, body
    token: str = body["key"]
    return token


async def recorded(server: ServerProcess, token: str, count: int) -> list[dict[str, Any]]:
    """The caller's own finished interceptions, once ``count`` of them are written (bounded wait)."""
    client = Client(server.url, token)

    async def check() -> list[dict[str, Any]] | None:
        status, body = await client.get("/api/v2/aibridge/interceptions?limit=100&q=initiator:me")
        assert status == 200, body
        results: list[dict[str, Any]] = body["results"]
        return results if len(results) >= count else None

    found: list[dict[str, Any]] | None = await wait_for(check, timeout=15)
    assert found is not None, f"expected {count} recorded interceptions"
    assert len(found) == count
    return found


def totals(interception: dict[str, Any]) -> dict[str, int]:
    return {k: sum(u[k] for u in interception["token_usages"]) for k in TOKEN_KEYS}


def usage(api: str, scenario: str) -> dict[str, int]:
    want = expected_usage(api, scenario)
    return {k: want.get(k, 0) for k in TOKEN_KEYS}


SDK_SCRIPT = r"""
import json, os, sys
kind, model = sys.argv[1], sys.argv[2]
headers = json.loads(sys.argv[3])
if kind == "openai":
    import openai
    client = openai.OpenAI(default_headers=headers, max_retries=0, timeout=30)   # reads OPENAI_BASE_URL/_API_KEY
    out = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello from env"}])
    print(json.dumps({"text": out.choices[0].message.content, "base": str(client.base_url)}))
else:
    import anthropic
    client = anthropic.Anthropic(default_headers=headers, max_retries=0, timeout=30)  # reads ANTHROPIC_*
    out = client.messages.create(model=model, max_tokens=64,
                                 messages=[{"role": "user", "content": "hello from env"}])
    print(json.dumps({"text": out.content[-1].text, "base": str(client.base_url)}))
"""


async def run_sdk_in_shell(snippet: str, kind: str, model: str, headers: dict[str, str]) -> dict[str, str]:
    """``eval`` the printed snippet in bash, then let the official SDK pick the variables up itself.

    In a thread: the fake upstream answers on this test's event loop, which must keep running.
    """
    env = {k: v for k, v in base_env().items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env["SNIPPET"] = snippet
    done = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", 'eval "$SNIPPET" && exec "$0" -c "$1" "$2" "$3" "$4"',
                         sys.executable, SDK_SCRIPT, kind, model, json.dumps(headers)],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


async def test_openai_and_anthropic_sdks_use_what_env_prints(env_bridge: Bridge) -> None:
    server = env_bridge.server
    token = await make_user(server, "envsdk")
    env = {"CODER_URL": server.url, "CODER_SESSION_TOKEN": token}

    out = await run_sdk_in_shell(aibridge_env("openai", env=env), "openai", "gpt-4.1", {})
    assert out["base"].rstrip("/") == f"{server.url}/api/v2/aibridge/openai/v1"
    assert out["text"]
    out = await run_sdk_in_shell(aibridge_env("anthropic", env=env), "anthropic", "claude-sonnet-4-5", {})
    assert out["text"]
    out = await run_sdk_in_shell(aibridge_env("claude-code", env=env), "anthropic", "claude-haiku-4-5",
                           {"User-Agent": "claude-cli/2.1.197 (external, cli)",
                            "X-Claude-Code-Session-Id": "sess-env-1"})
    assert out["text"]

    found = await recorded(server, token, 3)
    by_model = {r["model"]: r for r in found}
    assert set(by_model) == {"gpt-4.1", "claude-sonnet-4-5", "claude-haiku-4-5"}
    assert by_model["gpt-4.1"]["provider"] == "openai"
    assert totals(by_model["gpt-4.1"]) == usage("chat", "simple")
    assert totals(by_model["claude-sonnet-4-5"]) == usage("messages", "simple")
    claude = by_model["claude-haiku-4-5"]
    assert claude["client"] == "Claude Code" and claude["client_session_id"] == "sess-env-1"
    assert all(r["initiator"]["username"] == "envsdk" for r in found)
    assert all(r["user_prompts"][0]["prompt"] == "hello from env" for r in found)
    # The developer's token never reaches the upstream; the central keys do.
    assert all(token not in str(req.headers) for req in env_bridge.fake.requests)


async def test_codex_config_drives_the_responses_api(env_bridge: Bridge) -> None:
    server = env_bridge.server
    token = await make_user(server, "envcodex")
    text = aibridge_env("codex", "--url", server.url, "--token", token)
    provider = tomllib.loads(steps(text)[1])["model_providers"]["aibridge"]
    key = shell_exports(text)[provider["env_key"]]
    assert key == token

    # What Codex does with that provider: a streamed Responses call with its own headers.
    client = openai.AsyncOpenAI(base_url=provider["base_url"], api_key=key, max_retries=0, timeout=30,
                                default_headers={"originator": "codex_exec", "session-id": "codex-sess-9"})
    stream = await client.responses.create(model="gpt-5-codex-scenario-tool", input="list files", stream=True)
    kinds = [event.type async for event in stream]
    assert "response.completed" in kinds

    [found] = await recorded(server, token, 1)
    assert found["client"] == "Codex" and found["client_session_id"] == "codex-sess-9"
    assert found["metadata"]["route"] == "/v1/responses"
    assert totals(found) == usage("responses", "tool")
    assert [t["tool"] for t in found["tool_usages"]] and found["tool_usages"][0]["injected"] is False


@pytest.mark.parametrize("client", ["zed", "cline", "roo", "opencode"])
async def test_editor_settings_reach_the_bridge(env_bridge: Bridge, client: str) -> None:
    server = env_bridge.server
    token = await make_user(server, f"env{client}")
    text = aibridge_env(client, "--url", server.url, "--token", token)
    found = endpoints(client, text)
    assert {ep.kind for ep in found} == {"openai", "anthropic"}
    for ep in found:
        assert ep.token == token
        if ep.kind == "openai":
            oa = openai.AsyncOpenAI(base_url=ep.base_url, api_key=ep.token, max_retries=0, timeout=30)
            reply = await oa.chat.completions.create(model=f"gpt-4.1-{client}",
                                                     messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content
        else:
            an = anthropic.AsyncAnthropic(base_url=ep.base_url, api_key=ep.token, max_retries=0, timeout=30)
            msg = await an.messages.create(model=f"claude-{client}", max_tokens=32,
                                           messages=[{"role": "user", "content": "hi"}])
            assert msg.content
    records = await recorded(server, token, 2)
    assert {r["provider"] for r in records} == {"openai", "anthropic"}


async def test_create_token_mints_a_working_token(env_bridge: Bridge) -> None:
    server = env_bridge.server
    token = await make_user(server, "envmint")
    done = run_cli(["env", "claude-code", "--create-token", "--url", server.url, "--lifetime", "2h"],
                   {"CODER_SESSION_TOKEN": token})
    assert done.returncode == 0, done.stderr
    assert "created token" in done.stderr
    env = shell_exports(done.stdout)
    minted = env["ANTHROPIC_API_KEY"]
    assert minted not in (token, PLACEHOLDER) and re.fullmatch(r"[A-Za-z0-9]+-[A-Za-z0-9_-]+", minted)

    status, me = await Client(server.url, minted).get("/api/v2/users/me")
    assert status == 200 and me["username"] == "envmint"
    status, keys = await Client(server.url, token).get("/api/v2/users/me/keys/tokens")
    assert status == 200
    made = [k for k in keys if k["id"] == minted.split("-", 1)[0]]
    assert made and made[0]["token_name"] == "aibridge-env-claude-code"

    # The minted token works on the bridge route the output points at.
    an = anthropic.AsyncAnthropic(base_url=env["ANTHROPIC_BASE_URL"], api_key=minted, max_retries=0, timeout=30)
    msg = await an.messages.create(model="claude-minted", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert msg.content
    [found] = await recorded(server, minted, 1)
    assert found["initiator"]["username"] == "envmint"

    # --token wins over the environment; a bad token is a one-line 403.
    bad = run_cli(["env", "codex", "--create-token", "--url", server.url, "--token", "nope-nope"],
                  {"CODER_SESSION_TOKEN": token})
    assert bad.returncode == 2 and "403" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stdout == ""


async def test_server_access_url_is_used(env_bridge: Bridge) -> None:
    """Without --url or CODER_URL, env prints the URL the server advertises (its access URL)."""
    server = env_bridge.server
    text = aibridge_env("anthropic", env={"CODER_HTTP_ADDRESS": server.env["CODER_HTTP_ADDRESS"]})
    base = shell_exports(text)["ANTHROPIC_BASE_URL"]
    assert base == f"{server.url}/api/v2/aibridge/anthropic"
    an = anthropic.AsyncAnthropic(base_url=base, api_key=server.admin_token, max_retries=0, timeout=30)
    count = await an.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "x"}])
    assert count.input_tokens > 0
