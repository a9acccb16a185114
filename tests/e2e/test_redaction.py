"""Secret redaction through a real server: nothing unredacted reaches the database (the SQLite
file's bytes, or every PostgreSQL row), the journal, the logs or the metrics; with
``upstream`` the request sent upstream is redacted too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import asyncpg
import orjson
import pytest

from tests.e2e.conftest import ask, bridge_env
from tests.e2e.records import latest
from tests.fakes.upstream import FakeUpstream
from tests.harness import Client, Database, ServerProcess, free_port

MODEL = "claude-sonnet-4-5-scenario-secret"
AWS_ID = "AKIAZ7QX4MNB2VKL3PDR"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Tb3kLmW"
PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"
PROMPT = (f"Deploy with these: AWS_ACCESS_KEY_ID={AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n"
          f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\nWhat is wrong?")
# What the fake upstream's "secret" scenario answers with (tests/data/upstream/messages/secret.txtar).
ANSWER_SECRETS = ("Tr0ub4dor-and-3", "ghp_R4nd0mT0k3nV4lu3F0rT3st1ngAbCdEf1234")
SECRETS = (AWS_ID, AWS_SECRET, PEM_BODY, *ANSWER_SECRETS)


@pytest.fixture(scope="module")
async def fake(module_database: Database) -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


def start_env(fake: FakeUpstream, mode: str, metrics_port: int) -> dict[str, str]:
    return {**bridge_env(fake), "CODER_AIBRIDGE_REDACT": mode, "CODER_AIBRIDGE_STRUCTURED_LOGGING": "true",
            "CODER_LOGGING_JSON": "true", "CODER_PROMETHEUS_ENABLE": "true",
            "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{metrics_port}"}


async def postgres_text(db: Database) -> str:
    """Every row of every table, as text."""
    assert db.postgres is not None
    conn = await asyncpg.connect(db.postgres.url)
    try:
        found = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [r["tablename"] for r in found]
        rows = [str(r[0]) for t in tables for r in await conn.fetch(f'SELECT t::text FROM "{t}" t')]
    finally:
        await conn.close()
    return "\n".join(rows)


def files_bytes(data_dir: Path) -> bytes:
    """The SQLite database (with its WAL) and the recording journal, byte for byte."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file() and p.suffix != ".log")


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        return await resp.text()


@pytest.mark.parametrize("stream", [True, False])
async def test_store_mode_keeps_secrets_out_of_every_record(module_database: Database, fake: FakeUpstream,
                                                            stream: bool) -> None:
    metrics_port = free_port()
    server = await ServerProcess(module_database, env=start_env(fake, "store", metrics_port)).start()
    try:
        token = server.create_user(f"u{uuid.uuid4().hex[:8]}")
        client = anthropic.AsyncAnthropic(base_url=f"{server.url}/api/v2/aibridge/anthropic", api_key=token)
        fake.clear()
        await ask(client, stream, model=MODEL, max_tokens=256, messages=[{"role": "user", "content": PROMPT}])
        # store mode: the upstream still gets the request as the developer wrote it
        assert AWS_SECRET in fake.requests[-1].body.decode()

        found = await latest(Client(server.url, token), "initiator:me")
        [prompt] = found["user_prompts"]
        assert prompt["prompt"] == ("Deploy with these: AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key_id]\n"
                                    "aws_secret_access_key = [REDACTED:aws_secret_access_key]\n"
                                    "[REDACTED:private_key]\nWhat is wrong?")
        assert prompt["metadata"]["redactions"] == {"aws_access_key_id": 1, "aws_secret_access_key": 1,
                                                    "private_key": 1}
        [tool] = found["tool_usages"]
        assert orjson.loads(tool["input"]) == {"command": "GH_TOKEN=[REDACTED:github_token] gh pr list"}
        assert tool["metadata"]["redactions"] == {"github_token": 1}
        [thought] = found["model_thoughts"]
        assert "postgres://app:[REDACTED:url_password]@db.internal:5432/app" in thought["content"]
        assert thought["metadata"]["redactions"] == {"url_password": 1}

        metrics = await scrape(metrics_port)
        for kind in ("aws_access_key_id", "aws_secret_access_key", "private_key", "github_token", "url_password"):
            assert f'coder_aibridged_redactions_total{{kind="{kind}"}} 1.0' in metrics
    finally:
        server.stop()
    stored = files_bytes(module_database.data_dir)
    log = server.output()
    assert '"record_type": "prompt_usage"' in log or '"record_type":"prompt_usage"' in log
    if module_database.postgres is not None:
        stored += (await postgres_text(module_database)).encode()
        assert b"[REDACTED:aws_access_key_id]" in stored
    else:
        assert b"[REDACTED:aws_access_key_id]" in stored         # the check reads the real file
    for secret in SECRETS:
        assert secret.encode() not in stored, secret
        assert secret not in log, secret


async def test_upstream_mode_redacts_the_request_sent_upstream(module_database: Database,
                                                               fake: FakeUpstream) -> None:
    server = await ServerProcess(module_database, env=start_env(fake, "upstream", free_port())).start()
    try:
        token = server.create_user(f"u{uuid.uuid4().hex[:8]}")
        client = anthropic.AsyncAnthropic(base_url=f"{server.url}/api/v2/aibridge/anthropic", api_key=token)
        fake.clear()
        signature = "EqQBCkYIARgCIkB" + AWS_ID + "Zq8w=="          # opaque: must reach the upstream as it is
        messages: list[Any] = [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "ok", "signature": signature},
                                              {"type": "text", "text": "ok"}]},
            {"role": "user", "content": PROMPT},
        ]
        await ask(client, True, model=MODEL, max_tokens=256, messages=messages)
        sent = fake.requests[-1].body.decode()
        assert AWS_SECRET not in sent and PEM_BODY not in sent
        assert "[REDACTED:aws_secret_access_key]" in sent and "[REDACTED:private_key]" in sent
        assert signature in sent
        found = await latest(Client(server.url, token), "initiator:me")
        assert AWS_ID not in found["user_prompts"][0]["prompt"]
    finally:
        server.stop()


async def test_off_records_as_sent(module_database: Database, fake: FakeUpstream) -> None:
    server = await ServerProcess(module_database, env=start_env(fake, "off", free_port())).start()
    try:
        token = server.create_user(f"u{uuid.uuid4().hex[:8]}")
        client = anthropic.AsyncAnthropic(base_url=f"{server.url}/api/v2/aibridge/anthropic", api_key=token)
        await ask(client, False, model=MODEL, max_tokens=256, messages=[{"role": "user", "content": PROMPT}])
        found = await latest(Client(server.url, token), "initiator:me")
        assert found["user_prompts"][0]["prompt"] == PROMPT
        assert found["user_prompts"][0]["metadata"] == {}
    finally:
        server.stop()
