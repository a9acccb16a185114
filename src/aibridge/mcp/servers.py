"""Connections to the configured MCP servers (streamable HTTP, through the official ``mcp`` SDK).

Each operation (a tool listing, a tool call) opens its own short connection: a server that
restarts, drops its session or answers garbage then costs one failed operation, never a stuck
shared session, and the actor headers of one user can never leak into another user's call.
Every operation is bounded by the configured timeout. A listing that fails is logged, counted
and retried after a short delay; meanwhile that server offers no tools and requests go on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx2
import mcp.types as mcp_types
import orjson
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from aibridge.bridge.scrub import CREDENTIAL, current
from aibridge.config import McpServerConfig

log = logging.getLogger("aibridge.mcp")
HIDDEN_VALUE = "REDACTED"       # stands for every query value of a URL as shown

RETRY_AFTER_FAILURE = 10.0      # seconds before a failed listing is tried again (at most the refresh interval)
MAX_LIST_PAGES = 20             # a server that paginates forever is cut off here
ErrorCounter = Callable[[str, str], None]     # (server id, operation) → count a failure


@functools.cache
def shown_url(url: str) -> str:
    """An MCP server's URL as recorded, exported, counted, traced and logged: without its userinfo,
    its fragment and its query values (any may be a credential; the names stay, to tell URLs
    apart). The server itself is called with the whole URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    query = urlencode([(name, HIDDEN_VALUE) for name, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def mcp_secrets(configs: Iterable[McpServerConfig]) -> dict[str, str]:
    """What of the MCP servers' configuration never appears in a log line or a record
    (``bridge/scrub.py``): each whole URL (shown as ``shown_url``), its userinfo and query values,
    and the credential of each ``AUTHORIZATION``."""
    secrets: dict[str, str] = {}
    for config in configs:
        parts = urlsplit(config.url)
        if shown_url(config.url) != config.url:
            secrets[config.url] = shown_url(config.url)
        values = [parts.username, parts.password, *(value for _, value in parse_qsl(parts.query))]
        secrets.update({unquote(v): CREDENTIAL for v in values if v})
        secrets.update({v: CREDENTIAL for v in values if v})
        if config.authorization:
            secrets[config.authorization.split(" ", 1)[-1]] = CREDENTIAL
    return secrets


@dataclass(frozen=True, slots=True)
class McpTool:
    """One tool as its server lists it."""

    server: McpServerConfig
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResult:
    text: str                   # what goes back to the model
    is_error: bool              # the tool failed, timed out or answered an error result
    error: str | None = None    # the invocation error, recorded


def _content_text(result: mcp_types.CallToolResult) -> str:
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:                   # images, resources: their JSON, so the model sees what came back
            parts.append(block.model_dump_json(by_alias=True, exclude_none=True))
    if not parts and result.structured_content is not None:
        parts.append(orjson.dumps(result.structured_content).decode())
    return "\n".join(parts)


@dataclass(slots=True)
class McpServer:
    config: McpServerConfig
    timeout: float
    refresh_interval: float
    on_error: ErrorCounter | None = None
    _tools: tuple[McpTool, ...] = ()
    _listed_at: float | None = None          # monotonic time of the last good listing
    _retry_at: float = 0.0                   # after a failure: no new attempt before this
    _stale: bool = False                     # the server said tools/list_changed
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def due(self) -> bool:
        return self._due(time.monotonic())

    @property
    def current(self) -> tuple[McpTool, ...]:
        return self._tools

    def _due(self, now: float) -> bool:
        if now < self._retry_at:
            return False
        return self._stale or self._listed_at is None or now - self._listed_at >= self.refresh_interval

    async def tools(self) -> tuple[McpTool, ...]:
        """The server's tools, listed on first use and refreshed when due; () while it fails."""
        if not self._due(time.monotonic()):
            return self._tools
        async with self._lock:                # concurrent requests share one listing
            if self._due(time.monotonic()):
                await self._refresh()
        return self._tools

    async def _refresh(self) -> None:
        self._stale = False
        try:
            async with asyncio.timeout(self.timeout):
                tools = await self._list()
        except Exception as exc:              # down, slow or garbage: skip it, try again later
            self._failed("list", exc)
            self._tools = ()
            return
        self._tools = tools
        self._listed_at = time.monotonic()
        log.info("MCP server %s (%s): %d tools", self.config.id, shown_url(self.config.url), len(tools))

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + min(RETRY_AFTER_FAILURE, self.refresh_interval)
        log.warning("MCP server %s (%s): %s failed: %s", self.config.id, shown_url(self.config.url), operation,
                    describe(exc))
        if self.on_error is not None:
            self.on_error(self.config.id, operation)

    async def _list(self) -> tuple[McpTool, ...]:
        tools: list[McpTool] = []
        async with self._client({}) as client:
            cursor: str | None = None
            for _ in range(MAX_LIST_PAGES):
                page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                tools.extend(McpTool(self.config, t.name, t.description or "", dict(t.input_schema))
                             for t in page.tools if self.config.offers(t.name))
                cursor = page.next_cursor
                if not cursor:
                    break
        return tuple(tools)

    async def call(self, tool: str, arguments: dict[str, Any], headers: Mapping[str, str]) -> ToolResult:
        """Run one tool; a failure of any kind becomes an error result for the model."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client(headers) as client:
                    result = await client.call_tool(tool, arguments)
        except TimeoutError:
            message = f"MCP tool {tool} timed out after {self.timeout:g}s"
            return ToolResult(message, True, message)
        except Exception as exc:
            if self.on_error is not None:
                self.on_error(self.config.id, "call")
            message = f"MCP tool {tool} failed: {describe(exc)}"
            return ToolResult(message, True, message)
        text = _content_text(result)
        if result.is_error:
            return ToolResult(text, True, text or "the tool returned an error")
        return ToolResult(text, False)

    @asynccontextmanager
    async def _client(self, headers: Mapping[str, str]) -> AsyncIterator[Client]:
        all_headers = dict(headers)
        if self.config.authorization:
            all_headers["Authorization"] = self.config.authorization
        http = create_mcp_http_client(headers=all_headers, timeout=httpx2.Timeout(self.timeout))
        async with http, Client(streamable_http_client(self.config.url, http_client=http), cache=None,
                                read_timeout_seconds=self.timeout, message_handler=self._message) as client:
            yield client

    async def _message(self, message: IncomingMessage) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._stale = True


def describe(exc: BaseException) -> str:
    """One line for a failure, looking inside the SDK's exception groups; the URL's credentials
    taken out (httpx names the whole URL in its errors, and the line is recorded)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = current().text(str(exc).splitlines()[0]) if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
