"""A real MCP server (the official SDK's MCPServer, formerly FastMCP) over streamable HTTP.

Run as a process: ``python -m tests.fakes.mcp_server PORT``. Tools: ``lookup_secret`` (an answer
only the tool knows), ``add``, ``fail`` (always raises), ``slow`` (sleeps for minutes). ``GET /stats`` tells
how many ``tools/list`` and ``tools/call`` requests it answered and the headers of each MCP request.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SECRET = "the secret of {key} is AZURE-{n}"
REPO = Path(__file__).resolve().parents[2]


def _serve(port: int) -> None:
    import anyio
    import uvicorn
    from mcp.server.mcpserver import MCPServer
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.types import ASGIApp, Receive, Scope, Send

    stats: dict[str, Any] = {"tools_list": 0, "tools_call": 0, "headers": [], "slow_started": 0, "slow_finished": 0}

    class CountingServer(MCPServer):
        async def list_tools(self) -> Any:
            stats["tools_list"] += 1
            return await super().list_tools()

        async def call_tool(self, name: str, arguments: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            stats["tools_call"] += 1
            return await super().call_tool(name, arguments, *args, **kwargs)

    server = CountingServer("aibridge-test-tools")

    @server.tool()
    def lookup_secret(key: str) -> str:
        """Look up the secret value stored under a key."""
        return SECRET.format(key=key, n=len(key) * 7)

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two integers."""
        return str(a + b)

    @server.tool()
    def fail(reason: str) -> str:
        """A tool that always fails."""
        raise RuntimeError(f"fail was asked to fail: {reason}")

    @server.tool()
    async def slow(minutes: int) -> str:
        """Sleeps for the given minutes, then answers (timeouts and disconnects)."""
        stats["slow_started"] += 1
        await asyncio.sleep(minutes * 60)
        stats["slow_finished"] += 1
        return "done"

    @server.custom_route("/stats", methods=["GET"])  # type: ignore[untyped-decorator]  # the SDK leaves it untyped
    async def get_stats(_request: Request) -> JSONResponse:
        return JSONResponse(stats)

    app = server.streamable_http_app()

    def recording(inner: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"] == "/mcp":
                stats["headers"].append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
            await inner(scope, receive, send)
        return wrapped

    config = uvicorn.Config(recording(app), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    anyio.run(uvicorn.Server(config).serve)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class McpServerProcess:
    """The fake MCP server in its own process (start, stop, read its counters)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self, timeout: float = 20.0) -> McpServerProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.mcp_server", str(self.port)], cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake MCP server exited with {self.proc.returncode}")
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("fake MCP server did not start")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5.0) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
