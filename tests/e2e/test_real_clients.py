"""The real Claude Code and Codex CLIs → a real AI Bridge server → the fake upstream.

The strongest proof that users' tools work: the CLIs from npm (pinned in ``tests/e2e/clients.py``)
run exactly as a developer would run them against the bridge (the settings of
``../shared/captures/README.md``), offline, each in a temporary HOME. A scenario in the model name
picks the fake's answer; ``cc_bash`` and ``codex_exec`` make the model call the client's own shell
tool, so the client really runs a command and sends its output back through the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.clients import INSTALL_TIMEOUT, PINNED, NpmClients, client_env, npm_clients
from tests.e2e.conftest import Bridge
from tests.e2e.records import expected_totals, ids, totals
from tests.fakes.upstream import ReceivedRequest, expected_usage, get_scenario
from tests.harness import Client, wait_for

# The first test may install the CLIs (bounded by INSTALL_TIMEOUT); each CLI run is bounded too.
pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 300)
CLI_TIMEOUT = 120.0
# `echo aibridge-$((6*7))`: only a shell that really ran the command prints this.
TOOL_OUTPUT = "aibridge-42"


@pytest.fixture(scope="module")
def clients() -> NpmClients:
    return npm_clients()


@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


async def run_cli(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = CLI_TIMEOUT) -> Run:
    """Run a client CLI without blocking the event loop (the fake upstream answers on it)."""
    proc = await asyncio.create_subprocess_exec(*argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                start_new_session=True)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        pytest.fail(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s", pytrace=False)
    assert proc.returncode is not None
    return Run(argv, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def diagnose(bridge: Bridge, run: Run, sent: list[ReceivedRequest]) -> str:
    upstream = "\n".join(f"  {r.method} {r.path}?{r.query_string} scenario={r.scenario} followup={r.followup} "
                         f"status={r.status}" for r in sent)
    return (f"\n$ {' '.join(run.argv)}\nexit {run.returncode}\n--- stdout\n{run.stdout[-3000:]}\n--- stderr\n"
            f"{run.stderr[-3000:]}\n--- the fake upstream received\n{upstream or '  nothing'}\n--- server log\n"
            f"{bridge.server.output()[-3000:]}")


def reply(api: str, scenario: str, followup: bool = False) -> Any:
    """A scenario's reply as data (its blocking twin: same texts, ids and usage as the stream)."""
    return orjson.loads(get_scenario(api, scenario).replies["blocking/tool-call" if followup else "blocking"].body)


def scenario_id(api: str, scenario: str, followup: bool = False) -> str:
    return str(reply(api, scenario, followup)["id"])


def answer_text(api: str, scenario: str, followup: bool = False) -> str:
    """The model's text in a scenario's reply."""
    body = reply(api, scenario, followup)
    if api == "messages":
        return "".join(b["text"] for b in body["content"] if b["type"] == "text")
    return "".join(part["text"] for item in body["output"] if item["type"] == "message"
                   for part in item["content"] if part["type"] == "output_text")


def scenario_calls(api: str, scenario: str) -> list[tuple[str, str, Any]]:
    """(tool name, call id, input) of the tool calls in a scenario's first reply."""
    body = reply(api, scenario)
    if api == "messages":
        return [(b["name"], b["id"], b["input"]) for b in body["content"] if b["type"] == "tool_use"]
    return [(i["name"], i["call_id"], json.loads(i["arguments"])) for i in body["output"]
            if i["type"] == "function_call"]


def response_ids(record: dict[str, Any]) -> list[str]:
    return [u["provider_response_id"] for u in record["token_usages"]]


async def new_records(owner: Client, before: set[str], count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """Exactly ``count`` new finished interceptions (oldest first), once the recorder has written them."""

    async def check() -> list[dict[str, Any]] | None:
        status, body = await owner.get("/api/v2/aibridge/interceptions?limit=200")
        assert status == 200, body
        fresh = [r for r in body["results"] if r["id"] not in before and r["ended_at"]]
        return fresh if len(fresh) >= count else None

    found = await wait_for(check, timeout)
    assert found is not None, f"expected {count} new interceptions"
    assert len(found) == count, [(r["model"], r["metadata"]) for r in found]
    return sorted(found, key=lambda r: r["started_at"])


def check_upstream_requests(bridge: Bridge, sent: list[ReceivedRequest], path: str, auth: tuple[str, str]) -> None:
    """Every call reached the fake with the central key and never the user's token, and was answered."""
    assert sent, "the client never reached the upstream"
    for request in sent:
        assert request.path == path and request.status == 200, (request.path, request.status)
        assert request.headers[auth[0]] == auth[1]
        for value in request.headers.values():
            assert bridge.token not in value
    assert "Traceback" not in bridge.server.output()


async def check_session(owner: Client, session: str, client: str, records: list[dict[str, Any]]) -> None:
    status, detail = await owner.get(f"/api/v2/aibridge/sessions/{session}")
    assert status == 200, detail
    assert detail["client"] == client and detail["interception_count"] == len(records)
    # One human prompt and its tool round trip: one thread, one action per interception.
    [thread] = detail["threads"]
    actions = thread["agentic_actions"]
    assert thread["prompt"] == records[0]["user_prompts"][0]["prompt"]
    assert sorted(a["interception_id"] for a in actions) == sorted(r["id"] for r in records)
    assert detail["token_usage_summary"]["input_tokens"] == sum(totals(r)["input_tokens"] for r in records)


def tool_result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


# ---------------------------------------------------------------- Claude Code


def claude_env(bridge: Bridge, home: Path, clients: NpmClients, extra: dict[str, str]) -> dict[str, str]:
    return client_env(home, clients.node, {
        "ANTHROPIC_BASE_URL": bridge.anthropic_url,
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        **extra,
    })


async def run_claude(bridge: Bridge, clients: NpmClients, tmp_path: Path, *args: str,
                     env: dict[str, str] | None = None) -> tuple[Run, str]:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    session = str(uuid.uuid4())
    run = await run_cli([str(clients.claude), "-p", *args, "--session-id", session],
                        claude_env(bridge, home, clients, env or {"ANTHROPIC_API_KEY": bridge.token}), work)
    return run, session


@pytest.mark.parametrize("key_env", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"])
async def test_claude_code_prompt(bridge: Bridge, clients: NpmClients, tmp_path: Path, key_env: str) -> None:
    """ANTHROPIC_API_KEY sends the token as ``x-api-key``; ANTHROPIC_AUTH_TOKEN as ``Authorization: Bearer``."""
    owner = bridge.owner()
    before = await ids(owner)
    first = len(bridge.fake.requests)
    prompt = "How long should I steep green tea?"
    env = {key_env: bridge.token, "ANTHROPIC_CUSTOM_HEADERS": "X-Team: platform"}
    run, session = await run_claude(bridge, clients, tmp_path, prompt, env=env)   # Claude Code's default model
    sent = bridge.fake.requests[first:]
    assert run.returncode == 0, diagnose(bridge, run, sent)
    assert run.stdout.strip() == answer_text("messages", "simple"), diagnose(bridge, run, sent)

    check_upstream_requests(bridge, sent, "/v1/messages", ("x-api-key", "sk-ant-central"))
    assert [r.scenario for r in sent] == ["simple"]
    upstream = sent[0]
    assert "Authorization" not in upstream.headers        # the central key replaces either credential
    assert upstream.headers["X-Team"] == "platform"
    assert upstream.query_string == "beta=true" and upstream.stream
    assert upstream.headers["X-Claude-Code-Session-Id"] == session
    assert upstream.headers["User-Agent"].startswith(f"claude-cli/{PINNED['@anthropic-ai/claude-code']} ")

    [record] = await new_records(owner, before, 1)
    assert record["client"] == "Claude Code"
    assert record["client_session_id"] == session
    assert record["initiator"]["username"] == "alice"
    assert record["provider"] == "anthropic" and record["model"] == upstream.model
    assert record["metadata"]["streaming"] is True
    assert [p["prompt"] for p in record["user_prompts"]] == [prompt]
    assert totals(record) == expected_totals(expected_usage("messages", "simple", streaming=True))
    assert len(record["token_usages"]) == 1
    thinking = [b["thinking"] for b in reply("messages", "simple")["content"] if b["type"] == "thinking"]
    assert [t["content"] for t in record["model_thoughts"]] == thinking
    assert record["tool_usages"] == []


async def test_claude_code_bash_tool_round_trip(bridge: Bridge, clients: NpmClients, tmp_path: Path) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    first = len(bridge.fake.requests)
    prompt = "Run the marker command and tell me what it printed."
    model = "claude-opus-5-5-scenario-cc_bash"
    run, session = await run_claude(bridge, clients, tmp_path, prompt, "--model", model, "--allowedTools", "Bash")
    sent = bridge.fake.requests[first:]
    assert run.returncode == 0, diagnose(bridge, run, sent)
    assert run.stdout.strip() == answer_text("messages", "cc_bash", followup=True), diagnose(bridge, run, sent)

    check_upstream_requests(bridge, sent, "/v1/messages", ("x-api-key", "sk-ant-central"))
    assert [(r.scenario, r.followup) for r in sent] == [("cc_bash", False), ("cc_bash", True)]
    [(tool, call_id, tool_input)] = scenario_calls("messages", "cc_bash")
    assert tool == "Bash"
    # Turn 2 carries what Claude Code's Bash tool really printed, through the bridge.
    results = [block for block in sent[1].json["messages"][-1]["content"]
               if isinstance(block, dict) and block.get("type") == "tool_result"]
    assert [r["tool_use_id"] for r in results] == [call_id]
    assert tool_result_text(results[0]["content"]).splitlines()[0] == TOOL_OUTPUT, results
    assert results[0].get("is_error") is not True

    asked, answered = await new_records(owner, before, 2)
    for record in (asked, answered):
        assert record["client"] == "Claude Code" and record["client_session_id"] == session
        assert record["model"] == model and record["metadata"]["streaming"] is True
    assert response_ids(asked) == [scenario_id("messages", "cc_bash")]
    assert [p["prompt"] for p in asked["user_prompts"]] == [prompt]
    assert answered["user_prompts"] == []            # turn 2's user message is only the tool_result
    assert totals(asked) == expected_totals(expected_usage("messages", "cc_bash", streaming=True))
    assert totals(answered) == expected_totals(expected_usage("messages", "cc_bash", followup=True))
    assert [(t["tool"], t["provider_tool_call_id"], json.loads(t["input"]), t["injected"])
            for t in asked["tool_usages"]] == [(tool, call_id, tool_input, False)]
    assert answered["tool_usages"] == []
    await check_session(owner, session, "Claude Code", [asked, answered])


# ---------------------------------------------------------------- Codex


CODEX_SESSION = re.compile(r"^session id: (\S+)$", re.MULTILINE)


async def run_codex(bridge: Bridge, clients: NpmClients, tmp_path: Path, *args: str) -> Run:
    home, work = tmp_path / "home", tmp_path / "work"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    work.mkdir()
    (codex_home / "config.toml").write_text(
        'model_provider = "aibridge"\n'
        "\n"
        "[model_providers.aibridge]\n"
        'name = "AI Bridge"\n'
        f'base_url = "{bridge.openai_url}"\n'
        'env_key = "AIBRIDGE_TOKEN"\n'
        'wire_api = "responses"\n'
    )
    env = client_env(home, clients.node, {"CODEX_HOME": str(codex_home), "AIBRIDGE_TOKEN": bridge.token})
    return await run_cli([clients.node, str(clients.codex), "exec", "--skip-git-repo-check", *args], env, work)


async def test_codex_prompt(bridge: Bridge, clients: NpmClients, tmp_path: Path) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    first = len(bridge.fake.requests)
    prompt = "How long should I steep green tea?"
    run = await run_codex(bridge, clients, tmp_path, prompt)            # Codex's default model
    sent = bridge.fake.requests[first:]
    assert run.returncode == 0, diagnose(bridge, run, sent)
    assert run.stdout.strip() == answer_text("responses", "simple"), diagnose(bridge, run, sent)

    check_upstream_requests(bridge, sent, "/v1/responses", ("Authorization", "Bearer sk-openai-central"))
    assert [r.scenario for r in sent] == ["simple"]
    upstream = sent[0]
    assert upstream.stream and upstream.headers["originator"] == "codex_exec"
    assert upstream.headers["User-Agent"].startswith(f"codex_exec/{PINNED['@openai/codex']} ")
    assert "zstd" not in upstream.headers.get("Accept-Encoding", "")  # the bridge must be able to read the answer
    session = upstream.headers["session-id"]
    assert CODEX_SESSION.findall(run.stderr) == [session]

    [record] = await new_records(owner, before, 1)
    assert record["client"] == "Codex"
    assert record["client_session_id"] == session
    assert record["initiator"]["username"] == "alice"
    assert record["provider"] == "openai" and record["model"] == upstream.model
    assert record["metadata"]["streaming"] is True
    assert [p["prompt"] for p in record["user_prompts"]] == [prompt]
    assert totals(record) == expected_totals(expected_usage("responses", "simple", streaming=True))
    assert response_ids(record) == [scenario_id("responses", "simple")]
    assert record["model_thoughts"] and record["model_thoughts"][0]["content"]
    assert record["tool_usages"] == []


async def test_codex_exec_command_round_trip(bridge: Bridge, clients: NpmClients, tmp_path: Path) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    first = len(bridge.fake.requests)
    prompt = "Run the marker command and tell me what it printed."
    model = "gpt-5.5-scenario-codex_exec"
    # No sandbox: the command is the scenario's fixed `echo`, and the test must not depend on bubblewrap.
    run = await run_codex(bridge, clients, tmp_path, "--model", model, "--sandbox", "danger-full-access", prompt)
    sent = bridge.fake.requests[first:]
    assert run.returncode == 0, diagnose(bridge, run, sent)
    assert run.stdout.strip() == answer_text("responses", "codex_exec", followup=True), diagnose(bridge, run, sent)

    check_upstream_requests(bridge, sent, "/v1/responses", ("Authorization", "Bearer sk-openai-central"))
    assert [(r.scenario, r.followup) for r in sent] == [("codex_exec", False), ("codex_exec", True)]
    [(tool, call_id, tool_input)] = scenario_calls("responses", "codex_exec")
    assert tool == "exec_command"
    # Turn 2 carries what Codex's exec_command really printed, through the bridge.
    outputs = [item for item in sent[1].json["input"] if item.get("type") == "function_call_output"]
    assert [o["call_id"] for o in outputs] == [call_id]
    assert f"Output:\n{TOOL_OUTPUT}\n" in str(outputs[0]["output"]), outputs
    session = sent[0].headers["session-id"]
    assert sent[1].headers["session-id"] == session

    asked, answered = await new_records(owner, before, 2)
    for record in (asked, answered):
        assert record["client"] == "Codex" and record["client_session_id"] == session
        assert record["model"] == model and record["metadata"]["streaming"] is True
        # Responses: the prompt is the last `role: user` message, which turn 2 still carries.
        assert [p["prompt"] for p in record["user_prompts"]] == [prompt]
    assert response_ids(asked) == [scenario_id("responses", "codex_exec")]
    assert response_ids(answered) == [scenario_id("responses", "codex_exec", followup=True)]
    assert totals(asked) == expected_totals(expected_usage("responses", "codex_exec", streaming=True))
    assert totals(answered) == expected_totals(expected_usage("responses", "codex_exec", followup=True))
    assert [(t["tool"], t["provider_tool_call_id"], json.loads(t["input"]), t["injected"])
            for t in asked["tool_usages"]] == [(tool, call_id, tool_input, False)]
    assert answered["tool_usages"] == []
    await check_session(owner, session, "Codex", [asked, answered])
