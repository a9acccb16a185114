"""The real Claude Code and Codex CLIs in bring-your-own-key mode → a real AI Bridge server → the fake
upstream (issue 23 §1), set up as ``aibridge env CLIENT --byok`` prints: the user's own key as the
client's credential and the AI Bridge token in ``X-Coder-AI-Governance-Token``. The upstream (which
accepts only the users' keys) sees the user's credential, never the central key or the bridge
token; each interception is recorded under the user as ``byok`` with a masked hint."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.clients import INSTALL_TIMEOUT, NpmClients, client_env, npm_clients
from tests.e2e.conftest import Bridge, bridge_env
from tests.e2e.records import ids
from tests.e2e.test_real_clients import answer_text, claude_env, diagnose, new_records, run_cli
from tests.fakes.upstream import FakeUpstream, ReceivedRequest
from tests.harness import Database, ServerProcess, base_env

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 300)
GOV = "X-Coder-AI-Governance-Token"
CENTRAL = ("sk-openai-central", "sk-ant-central")
USER_OPENAI = "sk-proj-CodexUserOwnKey00000000000a1b2"
USER_ANTHROPIC = "sk-ant-api03-ClaudeUserOwnKey000000c3d4"
USER_OAUTH = "sk-ant-oat01-ClaudeMaxSubscription0000e5f6"


@pytest.fixture(scope="module")
def clients() -> NpmClients:
    return npm_clients()


@pytest.fixture(scope="module")
async def bridge(module_database: Database) -> AsyncIterator[Bridge]:
    fake = FakeUpstream(openai_key=USER_OPENAI, anthropic_key=USER_ANTHROPIC)
    await fake.start()
    server = await ServerProcess(module_database, env=bridge_env(fake)).start()
    try:
        yield Bridge(server, fake, server.create_user(f"byok{uuid.uuid4().hex[:6]}"), "")
    finally:
        server.stop()
        await fake.stop()


def check_only_own_credential(bridge: Bridge, sent: list[ReceivedRequest], header: tuple[str, str]) -> None:
    assert sent, "the client never reached the upstream"
    for request in sent:
        assert request.status == 200, (request.path, request.status)
        assert request.headers[header[0]] == header[1]
        assert GOV.lower() not in {k.lower() for k in request.headers}
        for value in request.headers.values():
            assert bridge.token not in value and value not in CENTRAL and not value.endswith(CENTRAL)
    assert "Traceback" not in bridge.server.output()


@pytest.mark.parametrize(("key_env", "key", "header", "hint"), [
    ("ANTHROPIC_API_KEY", USER_ANTHROPIC, ("x-api-key", USER_ANTHROPIC), "sk-ant-…c3d4"),
    ("ANTHROPIC_AUTH_TOKEN", USER_OAUTH, ("Authorization", f"Bearer {USER_OAUTH}"), "sk-ant-…e5f6"),
])
async def test_claude_code_byok(bridge: Bridge, clients: NpmClients, tmp_path: Path, key_env: str, key: str,
                                header: tuple[str, str], hint: str) -> None:
    bridge.fake.anthropic_key = key          # this fake upstream takes only the user's own credential
    owner = bridge.owner()
    before = await ids(owner)
    first = len(bridge.fake.requests)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = claude_env(bridge, home, clients, {key_env: key, "ANTHROPIC_CUSTOM_HEADERS": f"{GOV}: {bridge.token}"})
    run = await run_cli([str(clients.claude), "-p", "How long should I steep green tea?"], env, work)
    sent = [r for r in bridge.fake.requests[first:] if r.path == "/v1/messages"]
    assert run.returncode == 0, diagnose(bridge, run, sent)
    assert run.stdout.strip() == answer_text("messages", "simple"), diagnose(bridge, run, sent)
    check_only_own_credential(bridge, sent, header)

    [record] = await new_records(owner, before, 1)
    assert record["client"] == "Claude Code" and record["initiator"]["username"].startswith("byok")
    assert (record["credential_kind"], record["credential_hint"]) == ("byok", hint)
    assert record["token_usages"]
    assert key not in bridge.server.output()


async def test_codex_byok_with_env_http_headers(bridge: Bridge, clients: NpmClients, tmp_path: Path) -> None:
    owner = bridge.owner()
    before = await ids(owner)
    first = len(bridge.fake.requests)
    home, work = tmp_path / "home", tmp_path / "work"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    work.mkdir()
    (codex_home / "config.toml").write_text(        # what `aibridge env codex --byok` prints
        'model_provider = "aibridge-byok"\n'
        "\n"
        "[model_providers.aibridge-byok]\n"
        'name = "AI Bridge (own key)"\n'
        f'base_url = "{bridge.openai_url}"\n'
        'env_key = "OPENAI_API_KEY"\n'
        'wire_api = "responses"\n'
        f'env_http_headers = {{ "{GOV}" = "AIBRIDGE_TOKEN" }}\n'
    )
    env = client_env(home, clients.node, {"CODEX_HOME": str(codex_home), "OPENAI_API_KEY": USER_OPENAI,
                                          "AIBRIDGE_TOKEN": bridge.token})
    run = await run_cli([clients.node, str(clients.codex), "exec", "--skip-git-repo-check",
                         "How long should I steep green tea?"], env, work)
    sent = bridge.fake.requests[first:]
    assert run.returncode == 0, diagnose(bridge, run, sent)
    assert run.stdout.strip() == answer_text("responses", "simple"), diagnose(bridge, run, sent)
    check_only_own_credential(bridge, sent, ("Authorization", f"Bearer {USER_OPENAI}"))

    [record] = await new_records(owner, before, 1)
    assert record["client"] == "Codex" and record["initiator"]["username"].startswith("byok")
    assert (record["credential_kind"], record["credential_hint"]) == ("byok", "sk-proj-…a1b2")
    assert record["token_usages"]
    assert USER_OPENAI not in bridge.server.output()


def test_env_byok_prints_these_setups(tmp_path: Path) -> None:
    """``aibridge env CLIENT --byok``: the Codex block parses to the provider used above; the Claude
    Code exports, evaluated by bash, give the variables used above; other clients exit 2."""
    url, token = "http://127.0.0.1:3000", "abcdefghij-SECRETsecretSECRETsecret12"
    codex = run_aibridge(["env", "codex", "--byok", "--url", url, "--token", token], tmp_path)
    assert codex.returncode == 0, codex.stderr
    toml = "\n".join(line for line in codex.stdout.splitlines() if not line.startswith(("#", "export ")))
    doc = tomllib.loads(toml)
    assert doc["model_provider"] == "aibridge-byok"
    assert doc["model_providers"]["aibridge-byok"] == {
        "name": "AI Bridge (own key)", "base_url": f"{url}/api/v2/aibridge/openai/v1", "env_key": "OPENAI_API_KEY",
        "wire_api": "responses", "env_http_headers": {GOV: "AIBRIDGE_TOKEN"}}
    assert f"export AIBRIDGE_TOKEN={token}" in codex.stdout

    claude = run_aibridge(["env", "claude-code", "--byok", "--url", url, "--token", token], tmp_path)
    assert claude.returncode == 0, claude.stderr
    shown = subprocess.run(["bash", "-c", claude.stdout + "\nenv"], capture_output=True, text=True, timeout=30,
                           env={"PATH": "/usr/bin:/bin"}).stdout
    assert f"ANTHROPIC_CUSTOM_HEADERS={GOV}: {token}" in shown.splitlines()
    assert f"ANTHROPIC_BASE_URL={url}/api/v2/aibridge/anthropic" in shown.splitlines()
    assert "ANTHROPIC_AUTH_TOKEN" in claude.stdout          # the subscription variant, commented out

    refused = run_aibridge(["env", "zed", "--byok", "--url", url], tmp_path)
    assert refused.returncode == 2 and "--byok works with" in refused.stderr


def run_aibridge(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aibridge", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=base_env())
