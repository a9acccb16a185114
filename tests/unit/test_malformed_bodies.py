"""Malformed but valid JSON request bodies never break the bridge's readers (issue 20, 2.4).

Hypothesis builds request bodies whose known fields (``messages``, ``stream``, ``tools``,
``input``, ``model``, ``metadata``, …) hold anything JSON can say: wrong types, near-miss
shapes, nesting. Every reader the flow calls before going upstream must accept them: the API's
``request_info`` and ``prepare_upstream``, MCP's ``add_tools``, the Bedrock body, upstream-mode
redaction, and the body must still encode. What the door refuses (``body_problem``) is refused
for a reason the client is told, never by raising.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aibridge.bridge.apis.base import Api
from aibridge.bridge.apis.chat_completions import CHAT_COMPLETIONS
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.apis.responses import RESPONSES
from aibridge.bridge.bodies import MAX_DEPTH, body_problem
from aibridge.bridge.loop import TURN_APIS, FunctionTool
from aibridge.bridge.loop.base import Result
from aibridge.bridge.providers.bedrock.body import bedrock_body
from aibridge.redaction.addon import redact_tree
from aibridge.redaction.secrets import Redactor

APIS: list[Api] = [CHAT_COMPLETIONS, RESPONSES, MESSAGES]
FIELDS = ["model", "messages", "input", "stream", "stream_options", "tools", "tool_choice", "metadata",
          "max_tokens", "max_completion_tokens", "max_output_tokens", "previous_response_id", "system",
          "thinking", "output_config", "anthropic_beta", "context_management", "instructions", "reasoning",
          "parallel_tool_calls", "role", "content", "type", "text"]
WORDS = st.sampled_from(["user", "assistant", "system", "tool", "text", "input_text", "tool_use", "tool_result",
                         "function_call", "function_call_output", "message", "auto", "any", "enabled",
                         "ghp_" + "a" * 36, "data:x", "claude-haiku", "gpt-4.1"])
INTEGERS = st.integers(-(2**63), 2**64 - 1)           # what orjson reads as integers
SCALARS = st.none() | st.booleans() | INTEGERS | st.floats(allow_nan=False, allow_infinity=False) | \
    st.text(max_size=8) | WORDS
KEYS = st.sampled_from(FIELDS) | st.text(max_size=5)


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(KEYS, inner, max_size=5), max_leaves=20)


BODIES = st.dictionaries(st.sampled_from(FIELDS), json_values(), max_size=8)
TOOL = FunctionTool("bmcp_fake_echo", "echo", {"type": "object", "properties": {"text": {"type": "string"}}})
REDACTOR = Redactor()


def go_upstream(api: Api, body: dict[str, Any]) -> None:
    """What the flow does with a body before the upstream sees it, every step that reads it."""
    raw = orjson.dumps(body)
    body = orjson.loads(raw)                # what the door hands on
    if body_problem(raw, body) is not None:
        return
    api.request_info(body)
    api.prepare_upstream(body)
    turns = TURN_APIS[api.name]
    turns.add_tools(body, [TOOL])
    orjson.dumps(turns.continue_with(body, {}, []))
    redact_tree(body, REDACTOR)
    if api is MESSAGES:
        orjson.dumps(bedrock_body(body, "anthropic.claude-sonnet-4-5-20250929-v1:0", ["interleaved-thinking"]))
    orjson.dumps(body)


@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES)
def test_readers_accept_any_json(api: Api, body: dict[str, Any]) -> None:
    go_upstream(api, copy.deepcopy(body))


ANSWER_FIELDS = ["id", "content", "choices", "output", "usage", "message", "tool_calls", "function", "type", "name",
                 "input", "arguments", "call_id", "_raw_input"]
ANSWERS = st.dictionaries(st.sampled_from(ANSWER_FIELDS), json_values(), max_size=6)


@pytest.mark.parametrize("api", APIS, ids=lambda a: a.name)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES, answer=ANSWERS)
def test_inner_loop_accepts_any_answer(api: Api, body: dict[str, Any], answer: dict[str, Any]) -> None:
    """A blocking upstream answer of any shape, through the MCP loop's readers."""
    turns = TURN_APIS[api.name]
    calls = turns.calls(answer)
    results = [Result(call, "done", False) for call in calls]
    orjson.dumps(turns.continue_with(orjson.loads(orjson.dumps(body)), answer, results))
    orjson.dumps(turns.final_answer(answer, lambda name: name.startswith("bmcp_"), [turns.usage(answer)]))
    api.blocking_findings(answer)


def nested(depth: int) -> bytes:
    return b'{"model":"m","metadata":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 300, 1000])
def test_deep_nesting_is_refused_at_the_door(depth: int) -> None:
    """orjson reads 1024 levels but writes only 254: a body the bridge could not re-encode is
    refused before anything reads it; one it can is let through and encodes."""
    raw = nested(depth)
    body = orjson.loads(raw)
    problem = body_problem(raw, body)
    if depth + 1 > MAX_DEPTH:              # the metadata object sits one level below the body
        assert problem is not None and "nest" in problem
    else:
        assert problem is None
        for api in APIS:
            go_upstream(api, copy.deepcopy(body))


def test_small_bodies_are_not_encoded_again() -> None:
    """The check costs nothing for bodies too short to nest that deep."""
    raw = b'{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}'
    assert body_problem(raw, orjson.loads(raw)) is None
