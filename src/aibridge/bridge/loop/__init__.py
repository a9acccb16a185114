"""Several upstream calls inside one interception, joined into one answer for the client.

An addon (MCP injection) may ask the flow for another upstream call after a turn; these modules
know, per API, how to add function tools to a request, find the model's calls in an answer,
append a call and its result, and join the turns' streams into one continuous stream.
"""

from __future__ import annotations

from aibridge.bridge.loop.base import Call, FunctionTool, StreamJoiner, TurnApi
from aibridge.bridge.loop.chat import CHAT
from aibridge.bridge.loop.messages import MESSAGES
from aibridge.bridge.loop.responses import RESPONSES

TURN_APIS: dict[str, TurnApi] = {"messages": MESSAGES, "chat_completions": CHAT, "responses": RESPONSES}

__all__ = ["TURN_APIS", "Call", "FunctionTool", "StreamJoiner", "TurnApi"]
