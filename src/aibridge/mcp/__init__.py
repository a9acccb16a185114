"""MCP tools injection: server connections, the tools offered, and the addon that runs them."""
