"""GitHub Copilot through AI Bridge (issue 23 §2), against a fake Copilot API (``tests/fakes/copilot.py``).

Copilot cannot change its base URL: it calls ``api.individual.githubcopilot.com`` with the user's
own GitHub/Copilot bearer and its editor headers. Here a client sending exactly that (VS Code's
header set, the Copilot CLI's) goes through the AI Bridge Proxy with the proxy CA trusted and the
AI Bridge token as the proxy password, without any governance header: the proxy decrypts the plan
host and the request is BYOK as the CONNECT's user. It is recorded under that user with client
``GitHub Copilot``, ``credential_kind`` byok and a masked hint, usage counted, and the fake saw the
user's own bearer and editor headers, never the bridge token nor the governance header. Also: the
direct route (with the governance header; without it 403 in OpenAI's shape), a configured key
refused at start, ``--aibridge-allow-byok=false``, and Codex logged in with ChatGPT through the proxy.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from tests.e2e.records import expected_totals, ids, latest, totals
from tests.e2e.test_proxy import basic, trusting, wait_listening
from tests.fakes.copilot import FakeCopilot
from tests.fakes.upstream import FakeUpstream, ReceivedRequest, expected_usage
from tests.harness import Client, Database, ServerProcess, free_port, run_cli

GOV = "X-Coder-AI-Governance-Token"
PLAN_HOST = "api.individual.githubcopilot.com"
# VS Code's Copilot token (what it exchanges its GitHub login for) and the Copilot CLI's GitHub OAuth token.
VSCODE_TOKEN = ("tid=4c1e0f7a2b9d4e6f8a0b1c2d3e4f5a6b;exp=4102444800;sku=copilot_for_individual;st=dotcom;"
                "chat=1;cit=1;malfil=1;agent_mode=1;mcp=1;8kp=1:5d2a9c7e4b1f8a3d6c0e9b2f5a8d1c4e")
CLI_TOKEN = "gho_CopilotCliOAuthTokenOfTheUser00k7w3"
CHATGPT_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJjaGF0Z3B0X2FjY291bnRfaWQiOiJhY2N0In0.c2lnbmF0dXJlLWNoYXRncHQtYzVk6"
VSCODE = {
    "User-Agent": "GitHubCopilotChat/0.37.2026011603", "Editor-Version": "vscode/1.108.0",
    "Editor-Plugin-Version": "copilot-chat/0.37.2026011603", "Copilot-Integration-Id": "vscode-chat",
    "OpenAI-Intent": "conversation-agent", "X-Initiator": "user", "X-Interaction-Type": "conversation-agent",
    "X-GitHub-Api-Version": "2025-10-01", "X-Interaction-Id": "8f1d3c5a-0000-4000-8000-5e7b9d1f3a5c",
    "VScode-SessionId": "2b4d6f8a-0000-4000-8000-1a3c5e7f9b0d1767225600000",
    "Authorization": f"Bearer {VSCODE_TOKEN}",
}
CLI = {
    "User-Agent": "copilot/0.0.403 (client/cli linux v24.11.1)", "Editor-Version": "copilot/0.0.403",
    "Copilot-Integration-Id": "copilot-developer-cli", "X-Initiator": "agent",
    "Authorization": f"Bearer {CLI_TOKEN}",
}
CHAT: dict[str, Any] = {"model": "gpt-4.1",
                        "messages": [{"role": "user", "content": "how do I make a branch and switch to it?"}]}


@dataclass
class Env:
    server: ServerProcess
    copilot: FakeCopilot
    chatgpt: FakeUpstream
    token: str               # the member's AI Bridge token
    username: str
    proxy_port: int
    ca: Path

    def member(self) -> Client:
        return Client(self.server.url, self.token)

    async def via_proxy(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                        host: str = PLAN_HOST, proxy: str = "") -> tuple[int, dict[str, str], bytes]:
        """One request to https://host/path the way Copilot sends it: through the proxy (``proxy``: a
        proxy URL with the token as its password, as the set-up prints it), trusting the CA."""
        parts = urlsplit(proxy or f"http://coder:{self.token}@127.0.0.1:{self.proxy_port}")
        connector = aiohttp.TCPConnector(ssl=trusting(self.ca))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session, \
                session.request(method, f"https://{host}{path}", headers=headers,
                                data=None if body is None else orjson.dumps(body),
                                proxy=f"http://{parts.hostname}:{parts.port}",
                                proxy_headers=basic(parts.password or "", parts.username or "")) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def direct(self, path: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, \
                session.post(f"{self.server.url}/api/v2/aibridge/copilot/{path}", data=orjson.dumps(body),
                             headers=headers) as resp:
            return resp.status, await resp.read()


# Copilot's models are governed like any other: its list is filtered, a refused model never goes upstream.
CONFIG = """
aibridge:
  model_rules:
    allow:
      - {role: member, models: ["gpt-*", "claude-*"]}
"""


def copilot_env(copilot: FakeCopilot, chatgpt: FakeUpstream, proxy_port: int, **extra: str) -> dict[str, str]:
    return {
        "CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_SHUTDOWN_GRACE": "5s",
        "CODER_AIBRIDGE_PROXY_ENABLED": "true", "CODER_AIBRIDGE_PROXY_LISTEN_ADDR": f"127.0.0.1:{proxy_port}",
        "CODER_AIBRIDGE_PROVIDER_0_TYPE": "copilot", "CODER_AIBRIDGE_PROVIDER_0_BASE_URL": copilot.url,
        "CODER_AIBRIDGE_PROVIDER_1_TYPE": "openai", "CODER_AIBRIDGE_PROVIDER_1_NAME": "chatgpt",
        "CODER_AIBRIDGE_PROVIDER_1_BASE_URL": f"{chatgpt.url}/backend-api/codex", **extra,
    }


@pytest.fixture(scope="module")
async def env(module_database: Database) -> AsyncIterator[Env]:
    copilot, chatgpt = FakeCopilot({VSCODE_TOKEN, CLI_TOKEN}), FakeUpstream(openai_key=CHATGPT_TOKEN)
    await copilot.start()
    await chatgpt.start()
    port = free_port()
    config = module_database.data_dir / "copilot.yaml"
    config.write_text(CONFIG)
    server = await ServerProcess(module_database, env=copilot_env(copilot, chatgpt, port,
                                                                  CODER_CONFIG_PATH=str(config))).start()
    try:
        await wait_listening(port)
        username = f"cop{uuid.uuid4().hex[:6]}"
        yield Env(server, copilot, chatgpt, server.create_user(username), username, port,
                  module_database.data_dir / "proxy" / "ca.pem")
    finally:
        server.stop()
        await copilot.stop()
        await chatgpt.stop()


@pytest.fixture(autouse=True)
def _clear(env: Env) -> None:
    env.copilot.clear()
    env.chatgpt.clear()


def assert_only_own_credential(env: Env, seen: ReceivedRequest, sent: dict[str, str]) -> None:
    """The fake saw the client's own bearer and editor headers as sent, and nothing of AI Bridge's."""
    for name in ("Authorization", "Editor-Version", "Copilot-Integration-Id", "User-Agent", "X-Initiator",
                 "OpenAI-Intent"):
        if name in sent:
            assert seen.headers.get(name) == sent[name], (name, seen.header_pairs)
    names = {k.lower() for k in seen.headers}
    assert GOV.lower() not in names and "proxy-authorization" not in names
    assert env.token not in repr(seen.header_pairs) + seen.body.decode(errors="replace")


async def byok_record(env: Env, before: set[str], hint: str) -> dict[str, Any]:
    found = await latest(env.member(), "initiator:me", before)
    assert found["initiator"]["username"] == env.username
    assert (found["provider"], found["provider_name"], found["client"]) == ("copilot", "copilot", "GitHub Copilot")
    assert (found["credential_kind"], found["credential_hint"]) == ("byok", hint)
    assert VSCODE_TOKEN not in orjson.dumps(found).decode() and CLI_TOKEN not in orjson.dumps(found).decode()
    return found


# ---------------------------------------------------------------- through the proxy, as Copilot sends it

@pytest.mark.parametrize("stream", [True, False])
async def test_chat_completions_through_the_proxy(env: Env, stream: bool) -> None:
    before = await ids(env.member())
    status, headers, body = await env.via_proxy("POST", "/chat/completions", {**CHAT, "stream": stream}, VSCODE)
    assert status == 200, body[:300]
    reply = env.copilot.scenarios[("chat", "simple")].replies["streaming" if stream else "blocking"]
    # Relayed byte for byte: the no-choices first chunk with prompt_filter_results, the filter results, [DONE].
    assert body == (b"".join(chunk for chunk, _ in reply.chunks) if stream else reply.body)
    assert headers["x-github-request-id"]
    [seen] = env.copilot.requests_to("/chat/completions")
    assert seen.status == 200
    assert_only_own_credential(env, seen, VSCODE)
    found = await byok_record(env, before, "…" + VSCODE_TOKEN[-4:])
    assert found["metadata"]["door"] == "proxy" and found["model"] == "gpt-4.1"
    assert totals(found) == expected_totals(dict(env.copilot.scenarios[("chat", "simple")].usages["usage"]))
    assert found["user_prompts"][0]["prompt"] == CHAT["messages"][0]["content"]


async def test_messages_and_responses_through_the_proxy(env: Env) -> None:
    before = await ids(env.member())
    messages = {"model": "claude-sonnet-4.5", "max_tokens": 256, "stream": True,
                "messages": [{"role": "user", "content": "explain this stack trace"}]}
    status, _, body = await env.via_proxy("POST", "/v1/messages", messages,
                                          {**VSCODE, "anthropic-version": "2023-06-01"})
    assert status == 200 and b"event: message_stop" in body, body[:300]
    found = await byok_record(env, before, "…" + VSCODE_TOKEN[-4:])
    assert totals(found) == expected_totals(expected_usage("messages", "simple", streaming=True))
    before.add(found["id"])
    # The Copilot CLI, with its GitHub OAuth token, on the Responses API.
    status, _, body = await env.via_proxy("POST", "/responses", {"model": "gpt-5-mini", "input": "list the files"},
                                          CLI)
    assert status == 200 and orjson.loads(body)["object"] == "response", body[:300]
    found = await byok_record(env, before, "gho_…" + CLI_TOKEN[-4:])
    assert totals(found) == expected_totals(expected_usage("responses", "simple"))
    for path, sent in (("/v1/messages", VSCODE), ("/responses", CLI)):
        [seen] = env.copilot.requests_to(path)
        assert seen.status == 200
        assert_only_own_credential(env, seen, sent)


async def test_the_rest_of_copilots_api_is_passed_through(env: Env) -> None:
    before = await ids(env.member())
    status, _, body = await env.via_proxy("GET", "/models", headers=VSCODE)
    listed = orjson.loads(body)
    assert status == 200 and listed["object"] == "list"
    # the model rules (gpt-*, claude-*) hide the embedding model from the member's list
    assert [m["id"] for m in listed["data"]] == ["gpt-4.1", "gpt-5-mini", "claude-sonnet-4.5"]
    status, _, body = await env.via_proxy("GET", "/models/claude-sonnet-4.5", headers=VSCODE)
    assert status == 200 and orjson.loads(body)["vendor"] == "Anthropic"
    status, _, body = await env.via_proxy("GET", "/agents", headers=CLI)
    assert (status, orjson.loads(body)) == (200, {"agents": []})
    status, _, body = await env.via_proxy("POST", "/embeddings", {"model": "gpt-4.1-embed", "input": ["def main():"]},
                                          VSCODE)
    assert status == 200 and orjson.loads(body)["data"][0]["object"] == "embedding"
    assert [r.path for r in env.copilot.requests] == ["/models", "/models/claude-sonnet-4.5", "/agents", "/embeddings"]
    for seen in env.copilot.requests:
        assert_only_own_credential(env, seen, CLI if seen.path == "/agents" else VSCODE)
    # Refused before the upstream: a model outside the rules, a model call the bridge does not intercept.
    status, _, body = await env.via_proxy("POST", "/embeddings", {"model": "text-embedding-3-small", "input": "x"},
                                          VSCODE)
    assert status == 403 and orjson.loads(body)["error"]["type"] == "permission_error", body
    status, _, body = await env.via_proxy("POST", "/v1/chat/completions", CHAT, VSCODE)
    assert status == 404 and b"route not supported" in body
    assert len(env.copilot.requests) == 4
    assert await ids(env.member()) == before          # passed through: nothing recorded as an interception


async def test_proxy_request_without_a_credential_of_its_own(env: Env) -> None:
    headers = {k: v for k, v in VSCODE.items() if k != "Authorization"}
    status, _, body = await env.via_proxy("POST", "/chat/completions", CHAT, headers)
    assert status == 401 and "own provider credential" in orjson.loads(body)["error"]["message"]
    assert not env.copilot.requests


async def test_codex_logged_in_with_chatgpt_through_the_proxy(env: Env) -> None:
    """The same rule for the BYOK-only ``chatgpt`` provider: chatgpt.com is decrypted and Codex's own
    ChatGPT login goes upstream, recorded under the CONNECT's user."""
    before = await ids(env.member())
    headers = {"Authorization": f"Bearer {CHATGPT_TOKEN}", "ChatGPT-Account-ID": "acct-7c1a",
               "originator": "codex_exec", "User-Agent": "codex_exec/0.171.0 (Debian 12.0.0; x86_64)"}
    status, _, body = await env.via_proxy("POST", "/backend-api/codex/responses",
                                          {"model": "gpt-5", "input": "hi"}, headers, host="chatgpt.com")
    assert status == 200 and orjson.loads(body)["object"] == "response", body[:300]
    [seen] = env.chatgpt.requests_to("/backend-api/codex/responses")
    assert seen.headers["Authorization"] == f"Bearer {CHATGPT_TOKEN}"
    assert seen.headers["ChatGPT-Account-ID"] == "acct-7c1a" and GOV.lower() not in {k.lower() for k in seen.headers}
    found = await latest(env.member(), "initiator:me", before)
    assert (found["provider_name"], found["client"], found["credential_kind"]) == ("chatgpt", "Codex", "byok")
    assert found["metadata"]["door"] == "proxy"


async def test_what_aibridge_env_copilot_prints_works(env: Env, tmp_path: Path) -> None:
    """The shell part, run by bash, saves the CA and sets HTTPS_PROXY + NODE_EXTRA_CA_CERTS (the
    Copilot CLI); VS Code's http.proxy carries the token; a request through it is recorded."""
    proxy_url = f"http://127.0.0.1:{env.proxy_port}"
    done = run_cli(["env", "copilot", "--url", env.server.url, "--token", env.token, "--proxy-url", proxy_url], {})
    assert done.returncode == 0, done.stderr
    shell = subprocess.run(["bash", "-c", 'eval "$SNIPPET" && printf "%s\\n%s" "$HTTPS_PROXY" "$NODE_EXTRA_CA_CERTS"'],
                           env={"SNIPPET": done.stdout, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, timeout=30, check=False)
    assert shell.returncode == 0, shell.stderr
    https_proxy, ca_file = shell.stdout.split("\n")
    assert https_proxy == f"http://coder:{env.token}@127.0.0.1:{env.proxy_port}"
    assert Path(ca_file).read_bytes() == env.ca.read_bytes()
    lines = done.stdout.splitlines()
    settings = json.loads("\n".join(line.removeprefix("#   ") for line in lines[lines.index("#   {"):]))
    assert settings == {"http.proxy": https_proxy}
    status, shown = await env.member().get("/api/v2/aibridge/env/copilot")     # the REST form: proxy only
    assert status == 200 and shown["proxy"] and f"@127.0.0.1:{env.proxy_port}" in shown["text"], shown
    before = await ids(env.member())
    status, _, body = await env.via_proxy("POST", "/chat/completions", CHAT, VSCODE, proxy=settings["http.proxy"])
    assert status == 200, body[:300]
    await byok_record(env, before, "…" + VSCODE_TOKEN[-4:])


# ---------------------------------------------------------------- the direct route

async def test_direct_route_with_the_governance_header(env: Env) -> None:
    before = await ids(env.member())
    status, body = await env.direct("chat/completions", {**CHAT, "stream": True}, {**VSCODE, GOV: env.token})
    assert status == 200 and body.endswith(b"data: [DONE]\n\n"), body[-200:]
    [seen] = env.copilot.requests_to("/chat/completions")
    assert_only_own_credential(env, seen, VSCODE)
    found = await byok_record(env, before, "…" + VSCODE_TOKEN[-4:])
    assert found["metadata"].get("door") != "proxy"


async def test_direct_route_without_the_governance_header_is_refused(env: Env) -> None:
    for credential in (env.token, VSCODE_TOKEN):       # the bridge token alone, Copilot's alone
        status, body = await env.direct("chat/completions", CHAT, {**VSCODE, "Authorization": f"Bearer {credential}"})
        assert status == 403, body
        error = orjson.loads(body)["error"]        # OpenAI's shape: Copilot's first API is Chat Completions
        assert error["type"] == "permission_error", error
        for words in ("GitHub Copilot", "BYOK only", "AI Bridge Proxy", "http.proxy", GOV, "docs/clients.md"):
            assert words in error["message"], error["message"]
    assert not env.copilot.requests


# ---------------------------------------------------------------- configuration and switches

def test_a_configured_key_stops_start_up(module_database: Database) -> None:
    done = run_cli(["server"], {**module_database.env(), "CODER_HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
                                "CODER_AIBRIDGE_ENABLED": "true", "CODER_AIBRIDGE_PROVIDER_0_TYPE": "copilot",
                                "CODER_AIBRIDGE_PROVIDER_0_KEY": "ghu_CentralKeyNobodyShouldSet0000"}, timeout=30)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: CODER_AIBRIDGE_PROVIDER_0_KEY: provider 'copilot' (GitHub Copilot) is BYOK only: "
                     "each user's own GitHub login goes upstream; remove its key"], done.stderr


async def test_allow_byok_off_refuses_copilot(env: Env, module_database: Database) -> None:
    port = free_port()
    server = await ServerProcess(module_database, env=copilot_env(env.copilot, env.chatgpt, port,
                                                                  CODER_AIBRIDGE_ALLOW_BYOK="false")).start()
    try:
        await wait_listening(port)
        off = Env(server, env.copilot, env.chatgpt, server.create_user(f"off{uuid.uuid4().hex[:6]}"), "", port,
                  env.ca)
        for stream in (True, False):
            status, _, body = await off.via_proxy("POST", "/chat/completions", {**CHAT, "stream": stream}, VSCODE)
            assert status == 403, body[:300]
            message = orjson.loads(body)["error"]["message"]
            assert "disabled" in message and "BYOK only" in message, message
        status, body = await off.direct("chat/completions", CHAT, {**VSCODE, GOV: off.token})
        assert status == 403 and b"--aibridge-allow-byok=false" in body
        assert not env.copilot.requests
    finally:
        server.stop()
