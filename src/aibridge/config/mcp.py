"""Options of MCP tools injection, and one configured MCP server."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aibridge.config.option import Option

MCP_ENV_PREFIX = "CODER_AIBRIDGE_MCP_SERVER"
MCP_SERVER_FLAG = "--aibridge-mcp-server"
MCP_FIELDS = ("ID", "URL", "AUTHORIZATION", "TOOL_ALLOW_REGEX", "TOOL_DENY_REGEX")
_MCP_ID = re.compile(r"^[a-z0-9_-]+$")

MCP_OPTIONS: tuple[Option, ...] = (
    Option("aibridge_mcp_max_iterations", "CODER_AIBRIDGE_MCP_MAX_ITERATIONS", "10", "int",
           "Most rounds of injected MCP tool calls the bridge runs for one request (then it ends the answer "
           "with an error)."),
    Option("aibridge_mcp_timeout", "CODER_AIBRIDGE_MCP_TIMEOUT", "30s", "duration",
           "Time limit of one MCP tool call or tool listing."),
    Option("aibridge_mcp_refresh_interval", "CODER_AIBRIDGE_MCP_REFRESH_INTERVAL", "5m", "duration",
           "How often the tool lists of the MCP servers are refreshed (a failed listing is retried sooner)."),
)


@dataclass(frozen=True)
class McpSettings:
    """MCP's fields of ``Settings``."""

    aibridge_mcp_max_iterations: int
    aibridge_mcp_timeout: float
    aibridge_mcp_refresh_interval: float


@dataclass(frozen=True)
class McpServerConfig:
    id: str
    url: str
    authorization: str = ""
    allow: re.Pattern[str] | None = None
    deny: re.Pattern[str] | None = None

    def offers(self, tool: str) -> bool:
        """Deny beats allow; with neither, every tool."""
        if self.deny is not None and self.deny.search(tool):
            return False
        return self.allow is None or self.allow.search(tool) is not None
