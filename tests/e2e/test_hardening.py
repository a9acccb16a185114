"""Issue 11, "let in where it shouldn't be" and "bad input": each finding against a real server.

Paths are sent over a raw socket so that no client library normalizes ``..`` or re-encodes
``%2f`` before the bridge sees them (an attacker's client does not either).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.e2e.conftest import Bridge

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
