"""MCP injection as an addon on the flow.

``prepare``: the tools of the configured servers are added to the request (listed on first use,
cached, refreshed); the flow then hides calls to them from the client. ``after_turn``: when the
model called injected tools, the bridge runs them and hands the flow the next request (the
conversation plus the calls and their results), until the model stops calling them or the
iteration limit ends the answer with an error. Client tools are never run here: a turn that
also calls client tools runs the injected ones and returns the client's calls to the client.

Responses continuations: a streamed Responses answer joined from several upstream calls shows
the client the first call's response id (``bridge/loop/responses.py``), but the last call's
response holds the whole conversation. The addon stores first → last in the database when such
an answer ends (``store/turns.py``), and in ``prepare`` sends a request whose
``previous_response_id`` names a first id upstream with the last id instead, whichever worker or
replica served the answer. Recent pairs are also kept in memory; the database is the truth.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.bridge.actor_headers import ID_HEADER, USERNAME_HEADER
from aibridge.bridge.apis.base import ToolCall
from aibridge.bridge.apis.common import as_str
from aibridge.bridge.flow import Addon, Flow, FlowKey, Turn, TurnError
from aibridge.bridge.loop import TURN_APIS, Call, FunctionTool, TurnApi
from aibridge.bridge.loop.base import Result
from aibridge.mcp.servers import McpTool, shown_url
from aibridge.mcp.tools import Offered, Toolbox
from aibridge.store import turns as continuations

log = logging.getLogger(__name__)
CACHED_CONTINUATIONS = 10_000       # recent pairs this process also keeps in memory


@dataclass(slots=True)
class _Injected:
    """Per flow: the tools this request was offered and the rounds run so far."""

    turns: TurnApi
    offered: Offered
    by_name: dict[str, McpTool]
    rounds: int = 0
    shown_id: str = ""      # Responses: the first turn's response id, the one the client is shown


STATE: FlowKey[_Injected] = FlowKey("mcp")


class McpAddon(Addon):
    def __init__(self, toolbox: Toolbox, max_iterations: int, send_actor_headers: bool,
                 engine: AsyncEngine) -> None:
        self.toolbox = toolbox
        self.max_iterations = max_iterations
        self.send_actor_headers = send_actor_headers
        self.engine = engine
        self._continuations: OrderedDict[str, str] = OrderedDict()     # shown id → last upstream id

    async def prepare(self, flow: Flow, body: dict[str, Any]) -> bool:
        turns = TURN_APIS.get(flow.api.name)
        if turns is None:
            return False
        continued = await self._continue_joined(flow, body)
        offered = await self.toolbox.offered()
        if not offered:
            return continued
        turns.add_tools(body, [FunctionTool(name, t.description, t.input_schema) for name, t in offered.tools])
        state = _Injected(turns, offered, dict(offered.by_name))
        flow.put(STATE, state)
        flow.inner_tools = state.by_name.__contains__
        return True

    async def after_turn(self, flow: Flow, turn: Turn) -> dict[str, Any] | None:
        state = flow.get(STATE)
        if state is None:
            return None
        following = await self._run_turn(flow, state, turn)
        if following is None:
            await self._remember_joined(flow, state, turn)
        return following

    async def _run_turn(self, flow: Flow, state: _Injected, turn: Turn) -> dict[str, Any] | None:
        if turn.number == 0:
            state.shown_id = as_str(turn.answer.get("id"))
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

    async def _continue_joined(self, flow: Flow, body: dict[str, Any]) -> bool:
        """A Responses request continuing a joined answer goes on from its last upstream response."""
        previous = body.get("previous_response_id")
        if flow.api.name != "responses" or not isinstance(previous, str) or not previous:
            return False
        last = self._continuations.get(previous)
        if last is None:
            try:
                last = await continuations.upstream_id(self.engine, previous)
            except (OSError, SQLAlchemyError) as exc:     # the request goes on as the client wrote it
                log.warning("mcp: cannot read Responses continuations: %s", exc)
                return False
        if last is None:
            return False
        body["previous_response_id"] = last
        return True

    async def _remember_joined(self, flow: Flow, state: _Injected, turn: Turn) -> None:
        """The last turn of a streamed Responses answer: its id is what the shown id continues from."""
        last = as_str(turn.answer.get("id"))
        if flow.api.name != "responses" or not flow.streaming or not state.shown_id or last in ("", state.shown_id):
            return
        self._continuations[state.shown_id] = last
        while len(self._continuations) > CACHED_CONTINUATIONS:
            self._continuations.popitem(last=False)
        try:
            await continuations.remember(self.engine, state.shown_id, last)
        except (OSError, SQLAlchemyError) as exc:
            log.warning("mcp: cannot store a Responses continuation (%s → %s): %s", state.shown_id, last, exc)

    def _headers(self, flow: Flow) -> dict[str, str]:
        if not self.send_actor_headers:
            return {}
        return {ID_HEADER: str(flow.actor.id), USERNAME_HEADER: flow.actor.username}

