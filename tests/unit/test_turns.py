"""The per-API pieces of the inner loop: injecting tools, finding calls, appending results, joining streams.

The streams are the fake upstream's wire-faithful ``injected_tool`` / ``mixed_tools`` scenarios.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from aibridge.bridge.loop import TURN_APIS, FunctionTool
from aibridge.bridge.loop.base import Result, sum_usages
from aibridge.bridge.sse import SSEDecoder, SSEEvent
from tests.fakes.upstream import _ToolFill, load_scenarios

SCENARIOS = load_scenarios()
API_DIR = {"messages": "messages", "chat_completions": "chat", "responses": "responses"}
TOOL = "bmcp_test_lookup_secret"
FILL = _ToolFill(TOOL.encode(), orjson.dumps('{"key":"k1"}'), b'{"key":"k1"}')
INJECTED = [FunctionTool("bmcp_a_x", "X tool", {"type": "object"}), FunctionTool("bmcp_b_y", "Y", {})]


def hidden(name: str) -> bool:
    return name.startswith("bmcp_")


def events(api: str, scenario: str, key: str) -> list[SSEEvent]:
    reply = SCENARIOS[(API_DIR[api], scenario)].replies[key]
    decoder = SSEDecoder()
    found = [e for chunk, _ in reply.chunks for e in decoder.feed(FILL.apply(chunk))]
    return found + decoder.flush()


def blocking(api: str, scenario: str, key: str) -> dict[str, Any]:
    body = SCENARIOS[(API_DIR[api], scenario)].replies[key].body
    result: dict[str, Any] = orjson.loads(FILL.apply(body))
    return result


def decode(data: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(data) + decoder.flush()


def test_anthropic_tools_go_first_with_parallel_calls_off() -> None:
    body: dict[str, Any] = {"tools": [{"name": "Bash", "input_schema": {}}], "tool_choice": {"type": "any"}}
    TURN_APIS["messages"].add_tools(body, INJECTED)
    assert [t["name"] for t in body["tools"]] == ["bmcp_a_x", "bmcp_b_y", "Bash"]
    assert body["tools"][0] == {"name": "bmcp_a_x", "description": "X tool", "input_schema": {"type": "object"}}
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    none: dict[str, Any] = {"tool_choice": {"type": "none"}}
    TURN_APIS["messages"].add_tools(none, INJECTED)
    assert none["tool_choice"] == {"type": "none"}
    absent: dict[str, Any] = {}
    TURN_APIS["messages"].add_tools(absent, INJECTED)
    assert absent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


@pytest.mark.parametrize("api", ["chat_completions", "responses"])
def test_openai_tools_go_last_with_parallel_calls_off(api: str) -> None:
    client_tool = ({"type": "function", "function": {"name": "get_weather"}} if api == "chat_completions"
                   else {"type": "function", "name": "get_weather"})
    body: dict[str, Any] = {"tools": [client_tool]}
    TURN_APIS[api].add_tools(body, INJECTED)
    names = [t.get("name") or t["function"]["name"] for t in body["tools"]]
    assert names == ["get_weather", "bmcp_a_x", "bmcp_b_y"]
    assert body["parallel_tool_calls"] is False


def test_continue_with_appends_in_each_api_format() -> None:
    api = TURN_APIS["messages"]
    answer = blocking("messages", "injected_tool", "blocking")
    (call,) = api.calls(answer)
    assert (call.id, call.name, call.arguments) == ("toolu_01FkInj3ct3dMcpZx2Cv4Bn6", TOOL, {"key": "k1"})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    after = api.continue_with(body, answer, [Result(call, "boom", True)])
    assert after["messages"][1] == {"role": "assistant", "content": answer["content"]}
    assert after["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "content": "boom", "is_error": True}]}
    assert body["messages"] == [{"role": "user", "content": "hi"}]       # the previous request is untouched

    chat = TURN_APIS["chat_completions"]
    answer = blocking("chat_completions", "injected_tool", "blocking")
    (call,) = chat.calls(answer)
    after = chat.continue_with({"messages": []}, answer, [Result(call, "42", False)])
    assert after["messages"] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": TOOL, "arguments": '{"key":"k1"}'}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "42"}]

    responses = TURN_APIS["responses"]
    answer = blocking("responses", "injected_tool", "blocking")
    (call,) = responses.calls(answer)
    after = responses.continue_with({"input": "hello"}, answer, [Result(call, "42", False)])
    assert after["input"] == [{"role": "user", "content": "hello"}, *answer["output"],
                              {"type": "function_call_output", "call_id": call.id, "output": "42"}]


def test_final_blocking_answer_hides_injected_calls_and_sums_usage() -> None:
    api = TURN_APIS["messages"]
    first = blocking("messages", "mixed_tools", "blocking")
    final = api.final_answer(first, hidden, [api.usage(first), api.usage(first)])
    assert [b.get("name") for b in final["content"] if b["type"] == "tool_use"] == ["get_weather"]
    assert final["usage"]["input_tokens"] == 2 * 1840 and final["usage"]["output_tokens"] == 2 * 71
    assert final["usage"]["service_tier"] == "standard"


def test_usage_sums_nested_counts() -> None:
    assert sum_usages([{"a": 1, "d": {"x": 2}, "tier": "s"}, {"a": 2, "d": {"x": 3, "y": 1}, "tier": None}]) == {
        "a": 3, "d": {"x": 5, "y": 1}, "tier": "s"}


def run_joiner(api: str, turns: list[list[SSEEvent]]) -> tuple[list[SSEEvent], list[dict[str, Any]]]:
    joiner = TURN_APIS[api].joiner(hidden)
    out = b""
    answers = []
    for n, turn in enumerate(turns):
        if n:
            joiner.next_turn()
        for event in turn:
            out += joiner.feed(event)
        answers.append(joiner.answer())
    out += joiner.finish()
    return decode(out), answers


def test_anthropic_stream_is_one_message() -> None:
    out, answers = run_joiner("messages", [events("messages", "injected_tool", "streaming"),
                                           events("messages", "injected_tool", "streaming/tool-call")])
    kinds = [e.event for e in out]
    assert kinds.count("message_start") == 1 and kinds.count("message_stop") == 1 and kinds[-1] == "message_stop"
    blocks = [json.loads(e.data) for e in out if e.event == "content_block_start"]
    assert [(b["index"], b["content_block"]["type"]) for b in blocks] == [(0, "text"), (1, "text")]
    indices = [json.loads(e.data)["index"] for e in out if e.event and e.event.startswith("content_block")]
    assert indices == sorted(indices) and set(indices) == {0, 1}
    assert TOOL not in b"".join(e.data.encode() for e in out).decode()
    delta = json.loads(next(e.data for e in out if e.event == "message_delta"))
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert (delta["usage"]["input_tokens"], delta["usage"]["output_tokens"]) == (1840 + 1911, 52 + 15)
    tool_use = answers[0]["content"][1]
    assert tool_use["type"] == "tool_use" and tool_use["input"] == {"key": "k1"} and tool_use["name"] == TOOL
    assert answers[1]["content"][0]["text"] == "The tool ran fine and returned its result."


def test_anthropic_client_tool_stays_visible() -> None:
    out, answers = run_joiner("messages", [events("messages", "mixed_tools", "streaming")])
    starts = [json.loads(e.data)["content_block"] for e in out if e.event == "content_block_start"]
    assert [(s["type"], s.get("name")) for s in starts] == [("text", None), ("tool_use", "get_weather")]
    assert [json.loads(e.data)["index"] for e in out if e.event == "content_block_delta"][-1] == 1
    assert TURN_APIS["messages"].calls(answers[0])[1].arguments == {"city": "Paris"}


def test_chat_stream_is_one_completion() -> None:
    out, answers = run_joiner("chat_completions", [events("chat_completions", "injected_tool", "streaming"),
                                                   events("chat_completions", "injected_tool", "streaming/tool-call")])
    assert out[-1].data == "[DONE]" and [e.data for e in out].count("[DONE]") == 1
    chunks = [json.loads(e.data) for e in out[:-1]]
    assert {c["id"] for c in chunks} == {"chatcmpl-CfkInj3ctedT00l5a4s3d2f"}
    assert not any("tool_calls" in ch.get("delta", {}) for c in chunks for ch in c["choices"])
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")]
    assert finishes == ["stop"]
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (527, 35, 562)
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert text == "The tool ran fine and returned its result."
    assert answers[0]["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": TOOL,
                                                                                 "arguments": '{"key":"k1"}'}


def test_chat_client_tool_keeps_index_zero() -> None:
    out, _ = run_joiner("chat_completions", [events("chat_completions", "mixed_tools", "streaming")])
    calls = [tc for e in out[:-1] for ch in json.loads(e.data)["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert [c["index"] for c in calls] == [0, 0] and calls[0]["function"]["name"] == "get_weather"


def test_responses_stream_is_one_response() -> None:
    out, answers = run_joiner("responses", [events("responses", "injected_tool", "streaming"),
                                            events("responses", "injected_tool", "streaming/tool-call")])
    data = [json.loads(e.data) for e in out]
    kinds = [d["type"] for d in data]
    assert kinds.count("response.created") == 1 and kinds[-1] == "response.completed"
    assert kinds.count("response.completed") == 1
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert {d["output_index"] for d in data if "output_index" in d} == {0}
    assert not any(d.get("item", {}).get("type") == "function_call" for d in data)
    final = data[-1]["response"]
    first_id, last_id = "resp_0ebf5c169dbcef0200692a7b0aceecc19afd0b1c25d6e7f8a9", answers[1]["id"]
    assert final["id"] == first_id == data[0]["response"]["id"] != last_id         # one id for the client
    # the MCP addon maps the first turn's id (the one shown) to the last turn's, to continue from it
    assert answers[0]["id"] == first_id
    assert [i["type"] for i in final["output"]] == ["message"]
    assert (final["usage"]["input_tokens"], final["usage"]["output_tokens"]) == (240 + 301, 22 + 13)
    assert answers[0]["output"][0]["type"] == "function_call"
