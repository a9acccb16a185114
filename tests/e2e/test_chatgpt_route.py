"""OpenAI-format provider types and the ChatGPT subscription route through a real server (issue 23 §2).

- An ``azure`` provider: OpenAI's wire format, its key sent upstream as ``api-key`` (never a bearer).
- A ``chatgpt`` provider (type ``openai``, no key, BYOK only): the real Codex CLI logged in with a
  ChatGPT-style token reaches ``/api/v2/aibridge/chatgpt/v1/responses``, which goes to the ChatGPT
  backend's ``…/backend-api/codex/responses`` (a fake here) with the user's own token and account
  id; recorded as ``byok`` under the user and provider ``chatgpt``. Without the governance header
  the route refuses; on a server without a ``chatgpt`` provider it answers 404 route not supported.
"""

from __future__ import annotations

import base64
import datetime
import json
import tomllib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.e2e.clients import INSTALL_TIMEOUT, NpmClients, client_env, npm_clients
from tests.e2e.conftest import Bridge, bridge_env
from tests.e2e.records import ids
from tests.e2e.test_byok_clients import run_aibridge
from tests.e2e.test_real_clients import answer_text, diagnose, new_records, run_cli
from tests.fakes.upstream import FakeUpstream
from tests.harness import Database, ServerProcess

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT + 300)
GOV = "X-Coder-AI-Governance-Token"
AZURE_KEY = "azure-central-key-0000000000000000"
ACCOUNT_ID = "7c1a5b2e-0000-4000-8000-chatgptacct01"


def _jwt(claims: dict[str, Any]) -> str:
    """A token shaped like ChatGPT's (Codex reads the claims; nobody here checks the signature)."""
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


_EXP = int(datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC).timestamp())
_AUTH = {"chatgpt_plan_type": "plus", "chatgpt_user_id": "user-fake", "chatgpt_account_id": ACCOUNT_ID}
ID_TOKEN = _jwt({"email": "dev@example.com", "exp": _EXP, "iat": _EXP - 3600, "https://api.openai.com/auth": _AUTH})
CHATGPT_TOKEN = _jwt({"exp": _EXP, "iat": _EXP - 3600, "https://api.openai.com/auth": _AUTH,
                      "scp": ["openid", "profile", "email", "offline_access"], "jti": "chatgpt-access-e5f6"})


@pytest.fixture(scope="module")
def clients() -> NpmClients:
    return npm_clients()


@pytest.fixture(scope="module")
async def gateway(module_database: Database) -> AsyncIterator[Bridge]:
    fake = FakeUpstream()
    await fake.start()
    env = {**bridge_env(fake),
           "CODER_AIBRIDGE_PROVIDER_0_TYPE": "openai", "CODER_AIBRIDGE_PROVIDER_0_NAME": "chatgpt",
           "CODER_AIBRIDGE_PROVIDER_0_BASE_URL": f"{fake.url}/backend-api/codex",
           "CODER_AIBRIDGE_PROVIDER_1_TYPE": "azure", "CODER_AIBRIDGE_PROVIDER_1_KEY": AZURE_KEY,
           "CODER_AIBRIDGE_PROVIDER_1_BASE_URL": f"{fake.url}/v1/"}
    server = await ServerProcess(module_database, env=env).start()
    try:
        yield Bridge(server, fake, server.create_user(f"gpt{uuid.uuid4().hex[:6]}"), "")
    finally:
        server.stop()
        await fake.stop()


async def test_azure_sends_its_key_as_api_key(gateway: Bridge) -> None:
    gateway.fake.openai_key = AZURE_KEY
    owner = gateway.owner()
    before = await ids(owner)
    first = len(gateway.fake.requests)
    client = openai.AsyncOpenAI(base_url=f"{gateway.server.url}/api/v2/aibridge/azure/v1", api_key=gateway.token)
    answer = await client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    [sent] = gateway.fake.requests[first:]
    assert (sent.path, sent.status) == ("/v1/chat/completions", 200)
    assert sent.headers["api-key"] == AZURE_KEY and "Authorization" not in sent.headers
    [record] = await new_records(owner, before, 1)
    assert (record["provider"], record["provider_name"]) == ("azure", "azure")
    assert record["credential_kind"] == "centralized"


async def test_codex_with_chatgpt_login_through_the_chatgpt_route(gateway: Bridge, clients: NpmClients,
                                                                  tmp_path: Path) -> None:
    gateway.fake.openai_key = CHATGPT_TOKEN       # the fake ChatGPT backend takes only the user's own token
    owner = gateway.owner()
    before = await ids(owner)
    first = len(gateway.fake.requests)
    home, work = tmp_path / "home", tmp_path / "work"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    work.mkdir()
    config = chatgpt_setup(gateway.server.url, tmp_path)     # what `aibridge env codex --byok` prints
    (codex_home / "config.toml").write_text('cli_auth_credentials_store = "file"\n' + config)
    now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    (codex_home / "auth.json").write_text(json.dumps({     # what `codex login` (ChatGPT) writes
        "auth_mode": "chatgpt", "OPENAI_API_KEY": None, "last_refresh": now,
        "tokens": {"id_token": ID_TOKEN, "access_token": CHATGPT_TOKEN, "refresh_token": "rt-fake",
                   "account_id": ACCOUNT_ID}}))
    env = client_env(home, clients.node, {"CODEX_HOME": str(codex_home), "AIBRIDGE_TOKEN": gateway.token})
    run = await run_cli([clients.node, str(clients.codex), "exec", "--skip-git-repo-check",
                         "How long should I steep green tea?"], env, work)
    sent = [r for r in gateway.fake.requests[first:] if r.path == "/backend-api/codex/responses"]
    assert run.returncode == 0, diagnose(gateway, run, gateway.fake.requests[first:])
    assert run.stdout.strip() == answer_text("responses", "simple"), diagnose(gateway, run, sent)
    assert sent, diagnose(gateway, run, gateway.fake.requests[first:])
    for request in sent:
        assert request.status == 200
        assert request.headers["Authorization"] == f"Bearer {CHATGPT_TOKEN}"
        assert request.headers["ChatGPT-Account-ID"] == ACCOUNT_ID
        assert GOV.lower() not in {k.lower() for k in request.headers}
        assert not any(gateway.token in v for v in request.headers.values())
    [record] = await new_records(owner, before, 1)
    assert record["client"] == "Codex" and record["initiator"]["username"].startswith("gpt")
    assert (record["provider"], record["provider_name"]) == ("openai", "chatgpt")
    assert (record["credential_kind"], record["credential_hint"]) == ("byok", f"…{CHATGPT_TOKEN[-4:]}")
    assert record["token_usages"]
    assert CHATGPT_TOKEN not in gateway.server.output() and "Traceback" not in gateway.server.output()


def chatgpt_setup(url: str, cwd: Path) -> str:
    """The ChatGPT variant of ``aibridge env codex --byok`` (commented out there), as config.toml."""
    printed = run_aibridge(["env", "codex", "--byok", "--url", url, "--token", "t"], cwd)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "ChatGPT subscription" in line) + 2
    return "".join(line.removeprefix("#").removeprefix("   ") + "\n" for line in lines[start:])


def test_env_prints_the_chatgpt_setup(tmp_path: Path) -> None:
    doc = tomllib.loads(chatgpt_setup("http://127.0.0.1:3000", tmp_path))
    assert doc == {"model_provider": "aibridge-chatgpt", "model_providers": {"aibridge-chatgpt": {
        "name": "AI Bridge (ChatGPT)", "base_url": "http://127.0.0.1:3000/api/v2/aibridge/chatgpt/v1",
        "wire_api": "responses", "requires_openai_auth": True, "env_http_headers": {GOV: "AIBRIDGE_TOKEN"}}}}


async def post(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, \
            session.post(url, json={"model": "gpt-5", "input": "hi"}, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


@pytest.mark.parametrize("prefix", ["aibridge", "ai-gateway"])
async def test_the_chatgpt_route_is_byok_only(gateway: Bridge, prefix: str) -> None:
    first = len(gateway.fake.requests)
    url = f"{gateway.server.url}/api/v2/{prefix}/chatgpt/v1/responses"
    for credential in (gateway.token, CHATGPT_TOKEN):      # a bridge token alone, a ChatGPT token alone
        status, body = await post(url, {"Authorization": f"Bearer {credential}"})
        assert status == 403, body
        message = body["error"]["message"]
        assert "BYOK only" in message and GOV in message and "docs/clients.md" in message
    gateway.fake.openai_key = CHATGPT_TOKEN
    status, body = await post(url, {"Authorization": f"Bearer {CHATGPT_TOKEN}", GOV: gateway.token})
    assert status == 200 and body["object"] == "response", body
    [sent] = gateway.fake.requests[first:]
    assert sent.path == "/backend-api/codex/responses"
    assert sent.headers["Authorization"] == f"Bearer {CHATGPT_TOKEN}"


async def test_without_a_chatgpt_provider_the_route_is_not_supported(bridge: Bridge) -> None:
    for prefix in ("aibridge", "ai-gateway"):
        url = f"{bridge.server.url}/api/v2/{prefix}/chatgpt/v1/responses"
        status, body = await post(url, {"Authorization": f"Bearer {CHATGPT_TOKEN}", GOV: bridge.token})
        assert status == 404, body
        assert body["error"]["message"].startswith(f"route not supported: POST /api/v2/{prefix}/chatgpt/v1/responses")
        assert body["error"]["type"] == "not_found_error"          # OpenAI's shape, as every 404 route
