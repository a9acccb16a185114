"""Codex with WebSockets on (``supports_websockets = true``, as its built-in OpenAI provider has)
asks for the Responses WebSocket first; the bridge answers 426 and Codex falls back to HTTP POST
at once, so the turn is recorded like any other (measured: docs/clients.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.clients import INSTALL_TIMEOUT, NpmClients, client_env, npm_clients
from tests.e2e.conftest import Bridge
from tests.e2e.records import ids
from tests.e2e.test_real_clients import answer_text, diagnose, new_records, run_cli

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 300)


@pytest.fixture(scope="module")
def clients() -> NpmClients:
    return npm_clients()


async def test_codex_with_websockets_falls_back_to_http(bridge: Bridge, clients: NpmClients, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    work.mkdir()
    (codex_home / "config.toml").write_text(
        'model_provider = "aibridge"\n\n[model_providers.aibridge]\nname = "AI Bridge"\n'
        f'base_url = "{bridge.openai_url}"\nenv_key = "AIBRIDGE_TOKEN"\nwire_api = "responses"\n'
        "supports_websockets = true\n")
    env = client_env(home, clients.node, {"CODEX_HOME": str(codex_home), "AIBRIDGE_TOKEN": bridge.token})
    owner = bridge.owner()
    before = await ids(owner)
    first = len(bridge.fake.requests)
    started = time.monotonic()
    run = await run_cli([clients.node, str(clients.codex), "exec", "--skip-git-repo-check", "Say hi"], env, work)
    elapsed = time.monotonic() - started
    sent = bridge.fake.requests[first:]
    assert run.returncode == 0, diagnose(bridge, run, sent)
    assert run.stdout.strip() == answer_text("responses", "simple"), diagnose(bridge, run, sent)
    assert [r.path for r in sent] == ["/v1/responses"]
    [record] = await new_records(owner, before, 1)
    assert record["client"] == "Codex"
    # Refused at once: no reconnect loop (on a 404 Codex logs "Reconnecting... 2/5" … "5/5" and
    # tries the upgrade seven times, about 7 s, before every first turn).
    assert "Reconnecting" not in run.stderr, run.stderr
    assert run.stderr.count("failed to connect to Responses WebSocket") <= 1, run.stderr
    print(f"codex exec with supports_websockets = true: {elapsed:.2f} s")
