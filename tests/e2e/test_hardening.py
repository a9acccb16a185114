"""Issue 11, "let in where it shouldn't be" and "bad input": each finding against a real server.

Paths are sent over a raw socket so that no client library normalizes ``..`` or re-encodes
``%2f`` before the bridge sees them (an attacker's client does not either).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson

from tests.e2e.conftest import Bridge
from tests.harness import BACKENDS, POSTGRES_URL

BRIDGE = "/api/v2/aibridge"


async def raw_request(url: str, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"", raw_headers: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request written byte for byte; returns the status and the body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close",
                 f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        writer.write("\r\n".join(lines).encode() + b"\r\n" + raw_headers + b"\r\n" + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"chunked" in head.lower():
        payload = dechunk(payload)
    return status, payload


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


# ---------------------------------------------------------------- 6: passthrough path traversal

async def test_passthrough_refuses_traversal_and_encoded_separators(bridge: Bridge) -> None:
    auth = {"Authorization": f"Bearer {bridge.token}"}
    chats_before = len(bridge.fake.requests_to("/v1/chat/completions"))
    attempts = [
        ("POST", "/openai/v1/responses/..%2fchat%2fcompletions"),
        ("POST", "/openai/v1/responses/..%2Fchat%2Fcompletions"),
        ("POST", "/openai/v1/responses/%2e%2e/chat/completions"),
        ("POST", "/openai/v1/responses/../chat/completions"),
        ("GET", "/openai/v1/models/../../admin"),
        ("GET", "/openai/v1/models/..%5c..%5cadmin"),
        ("GET", "/anthropic/v1/models/../../v1/messages"),
        ("POST", "/anthropic/api/event_logging/..%2f..%2fv1%2fmessages"),
        ("GET", "/openai/v1/models/x%3fa=b"),
        ("GET", "/openai/v1/models/%252e%252e"),
    ]
    body = orjson.dumps({"model": "gpt-x", "messages": [{"role": "user", "content": "smuggled"}]})
    for method, path in attempts:
        status, payload = await raw_request(bridge.server.url, method, BRIDGE + path, auth, body)
        assert status == 400, (path, status, payload)
        error = orjson.loads(payload)["error"]                       # the provider's error shape
        assert "not allowed in the path" in error["message"], (path, error)
    assert len(bridge.fake.requests_to("/v1/chat/completions")) == chats_before   # nothing reached upstream


async def test_passthrough_allows_only_documented_methods(bridge: Bridge) -> None:
    auth = {"Authorization": f"Bearer {bridge.token}"}
    for method, path in (("DELETE", "/openai/v1/models/gpt-x"), ("POST", "/openai/v1/models"),
                         ("PUT", "/openai/v1/responses/resp_1"), ("GET", "/anthropic/v1/messages/count_tokens"),
                         ("DELETE", "/anthropic/v1/models/claude-x")):
        before = len(bridge.fake.requests)
        status, payload = await raw_request(bridge.server.url, method, BRIDGE + path, auth)
        assert status == 404, (method, path, status, payload)
        assert "route not supported" in orjson.loads(payload)["error"]["message"]
        assert len(bridge.fake.requests) == before
    # The documented ones still pass.
    status, payload = await raw_request(bridge.server.url, "GET", BRIDGE + "/openai/v1/models/gpt-4.1", auth)
    assert status == 200, payload
    assert bridge.fake.requests[-1].path == "/v1/models/gpt-4.1"


# ---------------------------------------------------------------- 7: billing headers

async def test_clients_cannot_choose_the_organization_or_project(bridge: Bridge) -> None:
    headers = {"Authorization": f"Bearer {bridge.token}", "Content-Type": "application/json",
               "OpenAI-Organization": "org-someone-else", "OpenAI-Project": "proj_expensive"}
    body = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "bill me"}]})
    status, payload = await raw_request(bridge.server.url, "POST", BRIDGE + "/openai/v1/chat/completions",
                                        headers, body)
    assert status == 200, payload
    sent = bridge.fake.requests_to("/v1/chat/completions")[-1]
    assert "OpenAI-Organization" not in sent.headers and "OpenAI-Project" not in sent.headers
    status, _ = await raw_request(bridge.server.url, "GET", BRIDGE + "/openai/v1/models", headers)
    assert status == 200
    sent = bridge.fake.requests_to("/v1/models")[-1]
    assert "OpenAI-Organization" not in sent.headers and "OpenAI-Project" not in sent.headers


# ---------------------------------------------------------------- 8: malformed headers never echo the token

async def test_control_character_in_a_header_does_not_leak_the_token(bridge: Bridge) -> None:
    secret = bridge.token.split("-", 1)[1]
    for path in ("/api/v2/users/me", BRIDGE + "/openai/v1/chat/completions"):
        status, payload = await raw_request(bridge.server.url, "GET", path,
                                            raw_headers=f"Authorization: Bearer {bridge.token}\x01x\r\n".encode())
        assert status == 400
        assert secret.encode() not in payload
        assert orjson.loads(payload)["message"] == "malformed HTTP request"
    await asyncio.sleep(0.2)
    output = bridge.server.output()
    assert secret not in output
    assert "Traceback" not in output
    assert "refused a malformed HTTP request" in output


# ---------------------------------------------------------------- 9: nothing told to strangers

async def test_unknown_provider_lists_providers_only_to_a_valid_token(bridge: Bridge) -> None:
    status, payload = await raw_request(bridge.server.url, "POST", BRIDGE + "/gemini/v1/generate")
    body: dict[str, Any] = orjson.loads(payload)
    assert status == 404 and "not configured" in body["message"]
    assert "openai" not in body["detail"] and "anthropic" not in body["detail"]
    status, payload = await raw_request(bridge.server.url, "POST", BRIDGE + "/gemini/v1/generate",
                                        {"Authorization": f"Bearer {bridge.token}"})
    assert status == 404 and "anthropic, openai" in orjson.loads(payload)["detail"]


# ---------------------------------------------------------------- 11: the provider's shape, always; no hanging

async def test_too_large_body_is_413_in_the_provider_shape(bridge: Bridge) -> None:
    auth = {"Authorization": f"Bearer {bridge.token}", "Content-Type": "application/json"}
    huge = b'{"model": "claude-x", "pad": "' + b"x" * (65 * 1024 * 1024) + b'"}'
    status, payload = await raw_request(bridge.server.url, "POST", BRIDGE + "/anthropic/v1/messages", auth, huge)
    assert status == 413
    body = orjson.loads(payload)
    assert body["type"] == "error" and "too large" in body["error"]["message"]


async def test_slow_and_vanishing_bodies(module_database: Any) -> None:
    from tests.e2e.conftest import bridge_env
    from tests.fakes.upstream import FakeUpstream
    from tests.harness import ServerProcess

    async with FakeUpstream() as fake:
        server = await ServerProcess(module_database, env={**bridge_env(fake),
                                                           "CODER_AIBRIDGE_REQUEST_READ_TIMEOUT": "1s"}).start()
        try:
            token = server.create_user("slowpoke")
            paths = ((BRIDGE + "/openai/v1/chat/completions", "openai"), ("/api/v2/users/me/keys/tokens", "rest"))
            for path, shape in paths:
                host, port = server.url.removeprefix("http://").rsplit(":", 1)
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"mo".encode())
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(), timeout=15)   # the body never comes
                writer.close()
                head, _, payload = answer.partition(b"\r\n\r\n")
                assert head.split(b" ", 2)[1] == b"408", answer
                body = orjson.loads(payload)
                message = body["error"]["message"] if shape == "openai" else body["message"]
                assert "did not arrive within 1s" in message
            # A client that goes away mid-upload is no error of the server's.
            for path in (BRIDGE + "/openai/v1/chat/completions", "/api/v2/users/me/keys/tokens"):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                             f"Content-Length: 1000\r\n\r\n{{\"a\":".encode())
                await writer.drain()
                await asyncio.sleep(0.3)
                writer.close()
            await asyncio.sleep(0.5)
            output = server.output()
            assert "Traceback" not in output and " ERROR " not in output, output
        finally:
            server.stop()


# ---------------------------------------------------------------- 18: upstream misconfiguration is visible

async def test_upstream_misconfiguration_is_logged_once_and_explained(module_database: Any) -> None:
    from tests.fakes.upstream import FakeUpstream
    from tests.harness import ServerProcess, free_port

    async with FakeUpstream() as fake:
        dead = f"http://127.0.0.1:{free_port()}/"
        env = {"CODER_AIBRIDGE_ENABLED": "true",
               "CODER_AIBRIDGE_OPENAI_KEY": "sk-openai-central",
               "CODER_AIBRIDGE_OPENAI_BASE_URL": f"{fake.url}/",          # missing /v1
               "CODER_AIBRIDGE_ANTHROPIC_KEY": "sk-ant-central",
               "CODER_AIBRIDGE_ANTHROPIC_BASE_URL": dead}
        server = await ServerProcess(module_database, env=env).start()
        try:
            auth = {"Authorization": f"Bearer {server.create_user('misconf')}", "Content-Type": "application/json"}
            chat = orjson.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
            for _ in range(2):
                status, payload = await raw_request(server.url, "POST", BRIDGE + "/openai/v1/chat/completions",
                                                    auth, chat)
                assert status == 502, payload
                message = orjson.loads(payload)["error"]["message"]
                assert "base URL" in message and "/v1" in message and "'openai'" in message
            status, payload = await raw_request(server.url, "GET", BRIDGE + "/openai/v1/models", auth)
            assert status == 502 and "base URL" in orjson.loads(payload)["error"]["message"]
            messages = orjson.dumps({"model": "claude-x", "max_tokens": 5,
                                     "messages": [{"role": "user", "content": "hi"}]})
            for _ in range(2):
                status, payload = await raw_request(server.url, "POST", BRIDGE + "/anthropic/v1/messages",
                                                    auth, messages)
                assert status == 502
                body = orjson.loads(payload)
                assert body["type"] == "error" and dead in body["error"]["message"]
                assert "base URL" in body["error"]["message"]
            await asyncio.sleep(0.3)
            lines = server.output().splitlines()
            bare = [line for line in lines if "bare 404" in line]
            assert len(bare) == 1 and "openai" in bare[0] and fake.url in bare[0], bare
            unreachable = [line for line in lines if "cannot be reached" in line]
            assert len(unreachable) == 1 and "anthropic" in unreachable[0] and dead in unreachable[0]
        finally:
            server.stop()


async def database_down_is_503_in_the_provider_shape() -> None:
    """PostgreSQL refusing connections: a token not yet cached cannot be checked → 503, the
    provider's shape on bridge routes and JSON on REST, the cause logged once."""
    from tests.e2e.conftest import bridge_env
    from tests.fakes.upstream import FakeUpstream
    from tests.harness import Database, ServerProcess

    async with Database("postgres") as db, FakeUpstream() as fake:
        assert db.postgres is not None
        server = await ServerProcess(db, env=bridge_env(fake)).start()
        fresh = [server.create_user(f"u{i}") for i in range(3)]        # never used: not in the auth cache
        admin = await asyncpg.connect(POSTGRES_URL, timeout=10)
        try:
            await admin.execute(f'ALTER DATABASE "{db.postgres.name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                                db.postgres.name)
            messages = orjson.dumps({"model": "claude-x", "max_tokens": 5,
                                     "messages": [{"role": "user", "content": "hi"}]})
            for token in fresh[:2]:
                status, payload = await raw_request(server.url, "POST", BRIDGE + "/anthropic/v1/messages",
                                                    {"X-Api-Key": token}, messages)
                assert status == 503, payload
                body = orjson.loads(payload)
                assert body["type"] == "error" and "database is unavailable" in body["error"]["message"]
            status, payload = await raw_request(server.url, "GET", "/api/v2/users/me",
                                                {"Coder-Session-Token": fresh[2]})
            assert status == 503 and "database is unavailable" in orjson.loads(payload)["message"]
            output = server.output()
            assert output.count("cannot check API tokens: the database is unavailable") == 1, output
        finally:
            await admin.execute(f'ALTER DATABASE "{db.postgres.name}" ALLOW_CONNECTIONS true')
            await admin.close()
            server.stop()


if "postgres" in BACKENDS:      # PostgreSQL can refuse connections on demand; SQLite has no outage to make
    test_database_down_is_503_in_the_provider_shape = database_down_is_503_in_the_provider_shape
