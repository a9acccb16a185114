"""The tools offered to the model: ``bmcp_<ID>_<tool>``, sorted by name, mapped back when called.

Providers accept tool names of at most 64 characters from ``[a-zA-Z0-9_-]``. A longer name (or
one with other characters) keeps a readable prefix and ends in a hash of the full name, so the
same configuration always gives the same names, and two tools never share one.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aibridge.mcp.servers import McpServer, McpTool

PREFIX = "bmcp_"
MAX_NAME = 64
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")


def tool_name(server_id: str, tool: str, extra: int = 0) -> str:
    """The name the model sees; ``extra`` lengthens the hash (only after a collision)."""
    full = f"{PREFIX}{server_id}_{tool}"
    clean = _INVALID.sub("_", full)
    if clean == full and len(full) <= MAX_NAME and not extra:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8 + extra]
    return f"{clean[:MAX_NAME - len(digest) - 1]}_{digest}"


@dataclass(frozen=True, slots=True)
class Offered:
    """The tools of one request: what the model sees, and the way back to each server's tool."""

    tools: tuple[tuple[str, McpTool], ...]          # (offered name, tool), sorted by name

    def __bool__(self) -> bool:
        return bool(self.tools)

    @property
    def by_name(self) -> Mapping[str, McpTool]:
        return dict(self.tools)


def name_tools(tools: Sequence[McpTool]) -> Offered:
    named: dict[str, McpTool] = {}
    for tool in tools:
        for extra in range(0, 57, 8):                # a collision of hashes: take a longer hash
            name = tool_name(tool.server.id, tool.name, extra)
            if name not in named:
                named[name] = tool
                break
    return Offered(tuple(sorted(named.items())))


class Toolbox:
    """All configured servers; their tools are listed lazily and cached by each server."""

    def __init__(self, servers: Sequence[McpServer]) -> None:
        self.servers = tuple(servers)
        self._named: tuple[tuple[tuple[McpTool, ...], ...], Offered] | None = None

    async def offered(self) -> Offered:
        """The tools of every server, named and sorted; no awaiting and no renaming while all are cached."""
        due = [server for server in self.servers if server.due()]
        if due:
            await asyncio.gather(*(server.tools() for server in due))
        listed = tuple(server.current for server in self.servers)
        if self._named is None or any(a is not b for a, b in zip(self._named[0], listed, strict=True)):
            self._named = (listed, name_tools([tool for tools in listed for tool in tools]))
        return self._named[1]

    def server(self, server_id: str) -> McpServer:
        return next(s for s in self.servers if s.config.id == server_id)
