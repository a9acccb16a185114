"""MCP injection as an addon on the flow.

``prepare``: the tools of the configured servers are added to the request (listed on first use,
cached, refreshed); the flow then hides calls to them from the client. ``after_turn``: when the
model called injected tools, the bridge runs them and hands the flow the next request (the
conversation plus the calls and their results), until the model stops calling them or the
iteration limit ends the answer with an error. Client tools are never run here: a turn that
also calls client tools runs the injected ones and returns the client's calls to the client.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aibridge.bridge.actor_headers import ID_HEADER, USERNAME_HEADER
from aibridge.bridge.apis.base import ToolCall
from aibridge.bridge.apis.common import as_str
from aibridge.bridge.flow import Addon, Flow, FlowKey, Turn, TurnError
from aibridge.bridge.loop import TURN_APIS, Call, FunctionTool, TurnApi
from aibridge.bridge.loop.base import Result
from aibridge.mcp.servers import McpTool, shown_url
from aibridge.mcp.tools import Offered, Toolbox


@dataclass(slots=True)
class _Injected:
    """Per flow: the tools this request was offered and the rounds run so far."""

    turns: TurnApi
    offered: Offered
    by_name: dict[str, McpTool]
    rounds: int = 0


STATE: FlowKey[_Injected] = FlowKey("mcp")


class McpAddon(Addon):
    def __init__(self, toolbox: Toolbox, max_iterations: int, send_actor_headers: bool) -> None:
        self.toolbox = toolbox
        self.max_iterations = max_iterations
        self.send_actor_headers = send_actor_headers

    async def prepare(self, flow: Flow, body: dict[str, Any]) -> bool:
        turns = TURN_APIS.get(flow.api.name)
        if turns is None:
            return False
        offered = await self.toolbox.offered()
        if not offered:
            return False
        turns.add_tools(body, [FunctionTool(name, t.description, t.input_schema) for name, t in offered.tools])
        state = _Injected(turns, offered, dict(offered.by_name))
        flow.put(STATE, state)
        flow.inner_tools = state.by_name.__contains__
        return True

    async def after_turn(self, flow: Flow, turn: Turn) -> dict[str, Any] | None:
        state = flow.get(STATE)
        if state is None:
            return None
        calls = state.turns.calls(turn.answer)
        injected = [c for c in calls if c.name in state.by_name]
        if not injected:
            return None
        returns_to_client = len(injected) < len(calls)
        if state.rounds >= self.max_iterations and not returns_to_client:
            raise TurnError(f"the model kept calling injected MCP tools: stopped after {self.max_iterations} "
                            "rounds of tool calls (--aibridge-mcp-max-iterations)")
        state.rounds += 1
        results = [await self._run(flow, state, turn, call) for call in injected]
        if returns_to_client:
            return None
        return state.turns.continue_with(turn.body, turn.answer, results)

    async def _run(self, flow: Flow, state: _Injected, turn: Turn, call: Call) -> Result:
        tool = state.by_name[call.name]
        started = time.time_ns()

        def record(error: str | None, size: int) -> None:
            turn.findings.append(ToolCall(
                as_str(turn.answer.get("id")), call.id, tool.name, call.raw, injected=True,
                server_url=shown_url(tool.server.url), invocation_error=error, started_ns=started,
                ended_ns=time.time_ns(), metadata={"result_size": size}))

        try:
            result = await self.toolbox.server(tool.server.id).call(tool.name, call.arguments, self._headers(flow))
        except asyncio.CancelledError:          # the client left: the call was abandoned, still recorded
            record("canceled: the client disconnected", 0)
            raise
        record(result.error, len(result.text.encode()))
        return Result(call, result.text, result.is_error)

    def _headers(self, flow: Flow) -> dict[str, str]:
        if not self.send_actor_headers:
            return {}
        return {ID_HEADER: str(flow.actor.id), USERNAME_HEADER: flow.actor.username}

