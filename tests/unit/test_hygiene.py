"""Credentials kept out of relays, records and logs; log values on one line (issue 20: 2.1, 2.5, 2.6).

The end-to-end side (a real server, the fake upstream and MCP server) is tests/e2e/test_hygiene.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest

from aibridge.bridge import scrub
from aibridge.bridge.apis.base import Api
from aibridge.bridge.diagnostics import Diagnosed
from aibridge.bridge.providers.anthropic import AnthropicProvider
from aibridge.bridge.providers.base import UpstreamError, UpstreamRequest, UpstreamResponse
from aibridge.bridge.providers.bedrock.provider import BedrockConfig, BedrockProvider
from aibridge.bridge.providers.copilot import ROUTES as COPILOT_ROUTES
from aibridge.bridge.providers.http import BufferedResponse
from aibridge.bridge.providers.openai import OpenAIProvider
from aibridge.bridge.routes import RouteTable
from aibridge.config import McpServerConfig
from aibridge.mcp.servers import describe, mcp_secrets, shown_url
from aibridge.observability.logging import HumanFormatter, JSONFormatter, escape
from tests.unit.test_observability import make_flow

AWS_KEY, AWS_SECRET = "AKIAFAKEFAKEFAKE1234", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY123"


@pytest.fixture
def registered() -> Iterator[scrub.Scrubber]:
    providers = [OpenAIProvider("openai", "sk-first-key-123, sk-second-key-456", ""),
                 AnthropicProvider("anthropic", "sk-ant-only-key-789", ""),
                 BedrockProvider("bedrock", BedrockConfig("us-east-1", "", AWS_KEY, AWS_SECRET, "m", "s"))]
    mcp = [McpServerConfig("coder", "https://bob:hunter2-pass@mcp.example.com/mcp?token=tok-0123456789&v=1",
                           "Bearer mcp-bearer-secret")]
    yield scrub.register({**scrub.provider_secrets(providers), **mcp_secrets(mcp)})
    scrub.register({})


# ---------------------------------------------------------------- 2.6 provider keys


def test_every_key_of_every_pool_and_bedrocks_credentials_are_scrubbed(registered: scrub.Scrubber) -> None:
    text = ("keys sk-first-key-123 sk-second-key-456 sk-ant-only-key-789 " + AWS_KEY + " " + AWS_SECRET
            + " " + orjson.dumps(AWS_SECRET).decode().replace("/", "\\/"))
    cleaned = registered.text(text)
    assert cleaned.count(scrub.PROVIDER_KEY) == 6, cleaned
    assert registered.bytes(text.encode()) == cleaned.encode()
    assert registered.text("nothing secret here") == "nothing secret here"


def test_short_values_are_not_registered() -> None:
    scrubber = scrub.Scrubber({"abc": scrub.PROVIDER_KEY, "": scrub.PROVIDER_KEY})
    assert not scrubber and scrubber.text("abc abc") == "abc abc"


class _Inner:
    """A provider answering one fixed response."""

    type, name = "openai", "openai"
    apis: dict[str, Api] = {}
    routes = RouteTable(())

    def __init__(self, response: UpstreamResponse) -> None:
        self.response = response

    def upstream_model(self, model: str) -> str:
        return model

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        return self.response

    async def close(self) -> None:
        pass


async def relayed(response: UpstreamResponse) -> tuple[UpstreamResponse, bytes, bytes]:
    diagnosed = Diagnosed(_Inner(response), "http://127.0.0.1:1/v1/")
    got = await diagnosed.send(UpstreamRequest("GET", "v1/models", "", None, b""))    # type: ignore[arg-type]
    chunks = b"".join([chunk async for chunk in got.iter_chunks()])
    return got, await got.read(), chunks


async def test_error_answers_are_scrubbed_for_every_route(registered: scrub.Scrubber) -> None:
    """Diagnosed wraps every provider for every route (intercepted and passed through), so the
    relayed body, read whole or chunk by chunk, never carries a key."""
    echo = b'{"error":{"message":"Incorrect API key provided: sk-second-key-456"}}'
    got, body, chunks = await relayed(BufferedResponse(401, echo))
    assert body == chunks == b'{"error":{"message":"Incorrect API key provided: [REDACTED:provider_key]"}}'
    assert got.status == 401


async def test_successful_answers_are_not_scanned(registered: scrub.Scrubber) -> None:
    answer = BufferedResponse(200, b'{"text":"sk-second-key-456"}')
    got, body, _ = await relayed(answer)
    assert got is answer and b"sk-second-key-456" in body


async def test_a_bare_404_is_a_wrong_base_url_except_on_a_wholesale_passthrough() -> None:
    """Copilot's catch-all relays paths that may not exist upstream: their 404 is relayed as it is."""
    inner = _Inner(BufferedResponse(404, b"404 page not found\n", {"Content-Type": "text/plain"}))
    inner.routes = COPILOT_ROUTES
    diagnosed = Diagnosed(inner, "http://127.0.0.1:1")
    got = await diagnosed.send(UpstreamRequest("GET", "agents/nope", "", None, b""))      # type: ignore[arg-type]
    assert got.status == 404 and await got.read() == b"404 page not found\n"
    with pytest.raises(UpstreamError, match="base URL"):
        await diagnosed.send(UpstreamRequest("GET", "models", "", None, b""))            # type: ignore[arg-type]


def test_log_lines_never_carry_a_key(registered: scrub.Scrubber) -> None:
    record = logging.LogRecord("aibridge.upstream", logging.ERROR, __file__, 1, "upstream said %s", ("x",), None)
    record.args = ("bad key sk-ant-only-key-789",)
    record.detail = AWS_SECRET
    for formatter in (HumanFormatter(), JSONFormatter()):
        line = formatter.format(record)
        assert "sk-ant-only-key-789" not in line and AWS_SECRET not in line
        assert scrub.PROVIDER_KEY in line


# ---------------------------------------------------------------- 2.1 MCP URLs


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:PASS@host/mcp?token=SECRET", "http://host/mcp?token=REDACTED"),
    ("https://mcp.example.com/api/mcp", "https://mcp.example.com/api/mcp"),
    ("https://u@mcp.example.com:8443/mcp?a=1&b=&a=2#frag", "https://mcp.example.com:8443/mcp?a=REDACTED&b=REDACTED&a=REDACTED"),
    ("http://user:pw@[::1]:9000/mcp", "http://[::1]:9000/mcp"),
])
def test_mcp_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_mcp_credentials_are_kept_out_of_logs_and_errors(registered: scrub.Scrubber) -> None:
    whole = "https://bob:hunter2-pass@mcp.example.com/mcp?token=tok-0123456789&v=1"
    error = RuntimeError(f"Client error '401 Unauthorized' for url '{whole}'")
    assert describe(error) == ("RuntimeError: Client error '401 Unauthorized' for url "
                               "'https://mcp.example.com/mcp?token=REDACTED&v=REDACTED'")
    line = registered.text("hunter2-pass tok-0123456789 mcp-bearer-secret")
    assert line == " ".join([scrub.CREDENTIAL] * 3)


# ---------------------------------------------------------------- 2.5 log injection


def test_control_characters_are_escaped() -> None:
    assert escape("plain words, ünïcode ✓") == "plain words, ünïcode ✓"
    assert escape("a\nb\rc\td\x1b[31m\x00\x85\u2028") == "a\\nb\\rc\\td\\x1b[31m\\x00\\x85\\u2028"


def test_text_logs_keep_every_value_on_its_line() -> None:
    forged = "2026-12-07 12:00:00 ERROR aibridge.server: forged"
    record = logging.LogRecord("aibridge.interceptions", logging.INFO, __file__, 1, "said %s", (f"hi\n{forged}",),
                               None)
    record.prompt = f"hello\n{forged}"
    line = HumanFormatter().format(record)
    assert "\n" not in line
    assert line.endswith(f"said hi\\n{forged} prompt=hello\\n{forged}")


def test_a_traceback_keeps_its_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info())
    assert "\nTraceback" in HumanFormatter().format(record)


def test_a_failed_interceptions_error_never_records_a_key(registered: scrub.Scrubber) -> None:
    """A stream's in-band error event (status 200: not scanned when relayed) becomes the flow's
    error, which is recorded, traced and logged: it is scrubbed there."""
    flow = make_flow()
    flow.fail("error", "upstream stream error: bad key sk-ant-only-key-789")
    assert flow.error == f"upstream stream error: bad key {scrub.PROVIDER_KEY}"
