"""Connections to MCP servers through the official SDK, against a real MCP server process."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

from aibridge.config import McpServerConfig
from aibridge.mcp.servers import McpServer
from aibridge.mcp.tools import Toolbox
from tests.fakes.mcp_server import McpServerProcess, free_port


@pytest.fixture(scope="module")
def mcp() -> Iterator[McpServerProcess]:
    server = McpServerProcess().start()
    try:
        yield server
    finally:
        server.stop()


def connect(url: str, timeout: float = 5.0, errors: list[tuple[str, str]] | None = None,
            **config: object) -> McpServer:
    def count(server_id: str, operation: str) -> None:
        if errors is not None:
            errors.append((server_id, operation))
    return McpServer(McpServerConfig("t", url, **config), timeout, 60.0, count)   # type: ignore[arg-type]


async def test_tools_are_listed_once_and_filtered(mcp: McpServerProcess) -> None:
    server = connect(mcp.url, allow=re.compile("^(add|fail|slow)$"), deny=re.compile("slow"))
    before = mcp.stats()["tools_list"]
    first, again = await server.tools(), await server.tools()
    assert [t.name for t in first] == ["add", "fail"] and again == first
    assert first[0].description == "Add two integers."
    assert first[0].input_schema["required"] == ["a", "b"]
    assert mcp.stats()["tools_list"] == before + 1          # cached until the refresh interval


async def test_calls_and_their_failures(mcp: McpServerProcess) -> None:
    server = connect(mcp.url)
    ok = await server.call("add", {"a": 2, "b": 40}, {})
    assert (ok.text, ok.is_error, ok.error) == ("42", False, None)
    failed = await server.call("fail", {"reason": "x"}, {})
    assert failed.is_error and failed.error == failed.text == "Error executing tool fail"
    unknown = await server.call("nope", {}, {})
    assert unknown.is_error and "nope" in (unknown.error or "")


async def test_a_slow_tool_times_out(mcp: McpServerProcess) -> None:
    server = connect(mcp.url, timeout=0.5)
    started = time.monotonic()
    result = await server.call("slow", {"minutes": 1}, {})
    assert time.monotonic() - started < 3
    assert result.is_error and result.error == "MCP tool slow timed out after 0.5s"


async def test_a_down_server_is_skipped_counted_and_retried_later() -> None:
    errors: list[tuple[str, str]] = []
    server = connect(f"http://127.0.0.1:{free_port()}/mcp", errors=errors)
    assert await server.tools() == ()
    assert await server.tools() == ()                       # no new attempt before the retry delay
    assert errors == [("t", "list")]


@pytest.fixture
async def garbage() -> AsyncIterator[str]:
    """An HTTP server that answers every request with something that is not MCP."""
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(text="<html>not MCP</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        await runner.cleanup()


async def test_a_garbage_server_is_skipped(garbage: str, mcp: McpServerProcess) -> None:
    errors: list[tuple[str, str]] = []
    bad, good = connect(garbage, timeout=3, errors=errors), connect(mcp.url)
    offered = await asyncio.wait_for(Toolbox([bad, good]).offered(), 10)
    assert [name for name, _ in offered.tools] == ["bmcp_t_add", "bmcp_t_fail", "bmcp_t_lookup_secret",
                                                   "bmcp_t_slow"]
    assert errors == [("t", "list")]
