"""Metrics, tracing and structured logging addons, driven in-process with a fake flow."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aibridge.bridge.apis.base import RequestInfo, Thought, ToolCall, Usage
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.flow import Addons, Flow, Reject
from aibridge.bridge.providers.base import UpstreamRequest
from aibridge.identity.roles import Actor
from aibridge.observability.logging import JSONFormatter
from aibridge.observability.metrics import OTHER, Metrics, MetricsAddon, route_label
from aibridge.observability.structured import MESSAGE, StructuredLogAddon, record_fields
from aibridge.observability.tracing import TracingAddon
from aibridge.resilience.breaker import CircuitBreakerAddon
from aibridge.resilience.limits import LimitsAddon
from aibridge.store import records as rec

P = "coder_aibridged_"
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"


class FakeProvider:
    type = "anthropic"
    name = "anthropic"
    apis: dict[str, Any] = {"v1/messages": MESSAGES}


ACTOR = Actor(uuid.uuid4(), "alice", "Alice", "a@example.com", "member", "tokid")


def make_flow(model: str = "claude-sonnet-4-5", prompt: str | None = "hello",
              client: str = "Claude Code", headers: dict[str, str] | None = None) -> Flow:
    return Flow(id=uuid.uuid4(), actor=ACTOR, provider=FakeProvider(), api=MESSAGES,  # type: ignore[arg-type]
                route="/v1/messages", method="POST", info=RequestInfo(model, True, prompt), model=model,
                client=client, session_id=None, user_agent="claude-cli/2.0", headers=headers or {})


def passthrough(route: str, headers: dict[str, str] | None = None, arrived_ns: int = 0) -> Flow:
    """A passed-through flow, answered 200."""
    flow = Flow(id=uuid.uuid4(), actor=ACTOR, provider=FakeProvider(), api=MESSAGES,  # type: ignore[arg-type]
                route=route, method="GET", info=RequestInfo("", False, None), model="", client="",
                session_id=None, user_agent="", headers=headers or {}, passed_through=True, arrived_ns=arrived_ns)
    flow.upstream_status = 200
    return flow


def upstream_request(headers: dict[str, str] | None = None) -> UpstreamRequest:
    return UpstreamRequest("POST", "v1/messages", "", CIMultiDict(headers or {}), b"{}", {}, True)


# ---------------------------------------------------------------- metrics

def sample(metrics: Metrics, metric: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(P + metric, labels)


def test_metrics_follow_one_interception() -> None:
    metrics = Metrics()
    addon = MetricsAddon(metrics)
    flow = make_flow()
    base = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
    who = {"initiator_id": str(flow.actor.id), "client": "Claude Code"}

    addon.request_parsed(flow)
    assert sample(metrics, "interceptions_inflight", route="/v1/messages", **base) == 1
    assert sample(metrics, "prompts_total", **base, **who) == 1
    addon.finding(flow, Usage("msg_1", 10, 20, 300, 4))
    addon.finding(flow, Usage("msg_2", 1, 2, 0, 0))
    addon.finding(flow, ToolCall("msg_1", "toolu_1", "get_weather", "{}"))
    # An injected tool is the bridge's own call, not a selection for the client.
    addon.finding(flow, ToolCall("msg_1", "toolu_2", "list_workspaces", "{}", injected=True,
                                 server_url="https://mcp.example/mcp"))
    addon.finding(flow, Thought("hmm"))
    flow.upstream_seconds = 0.0
    time.sleep(0.002)
    addon.interception_ended(flow)

    for kind, value in (("input", 11), ("output", 22), ("cache_read", 300), ("cache_write", 4)):
        assert sample(metrics, "tokens_total", type=kind, **base, **who) == value
    assert sample(metrics, "non_injected_tool_selections_total", name="get_weather", **base) == 1
    assert sample(metrics, "non_injected_tool_selections_total", name="list_workspaces", **base) is None
    assert sample(metrics, "injected_tool_invocations_total", server="https://mcp.example/mcp",
                  name="list_workspaces", **base) == 1
    assert sample(metrics, "interceptions_inflight", route="/v1/messages", **base) == 0
    assert sample(metrics, "interceptions_total", status="success", route="/v1/messages", method="POST",
                  **base, **who) == 1
    assert sample(metrics, "interceptions_duration_seconds_count", **base) == 1
    duration = sample(metrics, "interceptions_duration_seconds_sum", **base)
    overhead = sample(metrics, "upstream_overhead_seconds_sum", provider="anthropic", route="/v1/messages")
    assert duration is not None and overhead is not None and 0.002 <= overhead <= duration


def test_overhead_excludes_upstream_time_and_failures_count_by_outcome() -> None:
    metrics = Metrics()
    addon = MetricsAddon(metrics)
    flow = make_flow(prompt=None)
    addon.request_parsed(flow)
    flow.started -= 10.0            # the flow took 10 s, 9.9 of them waiting on the upstream
    flow.upstream_seconds = 9.9
    flow.fail("error", "upstream answered 500")
    addon.interception_ended(flow)
    overhead = sample(metrics, "upstream_overhead_seconds_sum", provider="anthropic", route="/v1/messages")
    assert overhead is not None and 0.09 < overhead < 0.2
    assert sample(metrics, "upstream_overhead_seconds_bucket", provider="anthropic", route="/v1/messages",
                  le="0.05") == 0
    assert sample(metrics, "interceptions_duration_seconds_bucket", provider="anthropic",
                  model="claude-sonnet-4-5", le="15.0") == 1
    assert sample(metrics, "prompts_total", provider="anthropic", model="claude-sonnet-4-5",
                  initiator_id=str(flow.actor.id), client="Claude Code") is None
    assert sample(metrics, "interceptions_total", provider="anthropic", model="claude-sonnet-4-5",
                  status="error", route="/v1/messages", method="POST", initiator_id=str(flow.actor.id),
                  client="Claude Code") == 1


def test_client_chosen_labels_are_bounded() -> None:
    metrics = Metrics(max_models=3)
    addon = MetricsAddon(metrics)
    for i in range(6):
        flow = make_flow(model=f"model-{i}" + "x" * 300)
        addon.request_parsed(flow)
        addon.interception_ended(flow)
    models = {s.labels["model"] for m in metrics.registry.collect() if m.name == P + "interceptions"
              for s in m.samples}
    assert len(models) == 4 and OTHER in models
    assert all(len(m) <= 128 for m in models)


def test_passthrough_routes_lose_their_ids() -> None:
    assert route_label("/v1/models/gpt-4o-2024-08-06") == "/v1/models/*"
    assert route_label("/v1/responses/resp_abc123/input_items") == "/v1/responses/*/input_items"
    assert route_label("/v1/messages/count_tokens") == "/v1/messages/count_tokens"
    metrics = Metrics()
    addon = MetricsAddon(metrics)
    for model in ("a", "b", "c"):
        addon.passthrough(passthrough(f"/v1/models/{model}"))
    assert sample(metrics, "passthrough_total", provider="anthropic", route="/v1/models/*", method="GET") == 3


async def test_refusals_are_counted_by_reason_and_guards_hold_no_metrics() -> None:
    metrics = Metrics()
    limits = LimitsAddon(max_concurrency=1)
    addons = Addons([limits, MetricsAddon(metrics)])
    first, second = make_flow(), make_flow()
    await addons.admit(first)
    with pytest.raises(Reject):
        await addons.admit(second)
    assert second.outcome == "rejected" and second.refusal == "concurrency"
    assert sample(metrics, "rate_limited_total", provider="anthropic", reason="concurrency") == 1
    addons.interception_ended(first)
    assert limits.slots.take(1)          # the slot is free again


async def test_circuit_metrics_are_read_from_the_breaker_when_scraped() -> None:
    metrics = Metrics()
    breaker = CircuitBreakerAddon(failure_threshold=1, interval=10, timeout=30, max_requests=1)
    addons = Addons([breaker, MetricsAddon(metrics)])
    metrics.watch(*addons.collectors())
    failed = make_flow()
    await addons.admit(failed)
    failed.upstream_status = 500
    addons.interception_ended(failed)
    labels = {"provider": "anthropic", "endpoint": "/v1/messages", "model": "claude-sonnet-4-5"}
    assert sample(metrics, "circuit_breaker_state", **labels) == 1.0
    assert sample(metrics, "circuit_breaker_trips_total", **labels) == 1
    refused = make_flow()
    with pytest.raises(Reject):
        await addons.admit(refused)
    assert refused.refusal == "circuit_open"
    assert sample(metrics, "circuit_breaker_rejects_total", **labels) == 1


# ---------------------------------------------------------------- tracing

@pytest.fixture
def spans() -> Iterator[tuple[TracingAddon, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    addon = TracingAddon.from_env(SimpleSpanProcessor(exporter))
    yield addon, exporter
    addon.provider.shutdown()


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        out.setdefault(span.name, []).append(span)
    return out


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def run_flow(addon: TracingAddon | Addons, flow: Flow, request: UpstreamRequest) -> None:
    addon.request_parsed(flow)
    addon.upstream_request(flow, request)
    flow.upstream_status = 200
    addon.upstream_response(flow)
    addon.finding(flow, Usage("msg_1", 1, 2))
    addon.finding(flow, ToolCall("msg_1", "toolu_1", "get_weather", "{}"))
    addon.finding(flow, Thought("hmm"))
    addon.interception_ended(flow)


def test_interception_span_tree(spans: tuple[TracingAddon, InMemorySpanExporter]) -> None:
    addon, exporter = spans
    flow = make_flow()
    request = upstream_request({"traceparent": TRACEPARENT})
    run_flow(Addons([addon]), flow, request)
    found = by_name(exporter.get_finished_spans())
    assert {name: len(s) for name, s in found.items()} == {
        "Intercept": 1, "Intercept.CreateInterceptor": 1, "Intercept.RecordInterception": 1,
        "Intercept.ProcessRequest": 1, "Intercept.RecordPromptUsage": 1,
        "Intercept.ProcessRequest.Upstream": 1,
        "Intercept.RecordTokenUsage": 1, "Intercept.RecordToolUsage": 1, "Intercept.RecordModelThought": 1,
        "Intercept.RecordInterceptionEnded": 1}
    root, process = found["Intercept"][0], found["Intercept.ProcessRequest"][0]
    assert root.parent is None      # the client sent no traceparent: a new trace
    assert root.attributes == {
        "interception_id": str(flow.id), "user_id": str(flow.actor.id), "provider": "anthropic",
        "model": "claude-sonnet-4-5", "streaming": True,
        "request_path": "/api/v2/aibridge/anthropic/v1/messages",
        "outcome": "success"}
    root_id, process_id = root.context.span_id, process.context.span_id
    for name in ("Intercept.CreateInterceptor", "Intercept.RecordInterception", "Intercept.ProcessRequest",
                 "Intercept.RecordInterceptionEnded"):
        assert parent_id(found[name][0]) == root_id, name
    for name in ("Intercept.ProcessRequest.Upstream", "Intercept.RecordPromptUsage",
                 "Intercept.RecordTokenUsage", "Intercept.RecordToolUsage"):
        assert parent_id(found[name][0]) == process_id, name
        attributes = found[name][0].attributes
        assert attributes is not None and attributes["interception_id"] == str(flow.id)
    # The upstream gets the Upstream span as its parent, not the client's traceparent.
    upstream = found["Intercept.ProcessRequest.Upstream"][0]
    assert request.headers["traceparent"].startswith(
        f"00-{upstream.context.trace_id:032x}-{upstream.context.span_id:016x}-")
    assert len(request.headers.getall("traceparent")) == 1
    assert flow.metadata == {}      # the spans' state left the flow with it


def test_failed_interception_marks_spans(spans: tuple[TracingAddon, InMemorySpanExporter]) -> None:
    addon, exporter = spans
    flow = make_flow()
    addon.request_parsed(flow)
    addon.upstream_request(flow, upstream_request())
    flow.fail("error", "upstream unreachable")
    addon.upstream_response(flow)        # no status: it never answered
    addon.interception_ended(flow)
    found = by_name(exporter.get_finished_spans())
    assert not found["Intercept.ProcessRequest.Upstream"][0].status.is_ok
    assert found["Intercept"][0].status.description == "upstream unreachable"


def test_spans_continue_the_clients_trace(spans: tuple[TracingAddon, InMemorySpanExporter]) -> None:
    addon, exporter = spans
    arrived = time.time_ns() - 5_000_000
    flow = make_flow(headers={"traceparent": TRACEPARENT})
    flow.arrived_ns = arrived
    request = upstream_request({"traceparent": TRACEPARENT})
    run_flow(addon, flow, request)
    addon.passthrough(passthrough("/v1/models", {"traceparent": TRACEPARENT}, arrived))
    found = by_name(exporter.get_finished_spans())
    for name in ("Intercept", "Passthrough"):
        span = found[name][0]
        assert f"{span.context.trace_id:032x}" == CLIENT_TRACE_ID
        assert span.parent is not None and f"{span.parent.span_id:016x}" == CLIENT_SPAN_ID
        assert span.start_time == arrived
    assert found["Passthrough"][0].attributes == {
        "provider": "anthropic", "request_path": "/api/v2/aibridge/anthropic/v1/models",
        "passthrough_url": "/v1/models", "passthrough_method": "GET", "http.response.status_code": 200}
    assert CLIENT_TRACE_ID in request.headers["traceparent"]
    assert CLIENT_SPAN_ID not in request.headers["traceparent"]
    # CreateInterceptor starts when the request arrived, so it starts with Intercept.
    root, create = found["Intercept"][0], found["Intercept.CreateInterceptor"][0]
    assert root.start_time == create.start_time


# ---------------------------------------------------------------- structured logs

def test_structured_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    flow = make_flow(model="gpt-4.1", client="Codex")
    addons = Addons([StructuredLogAddon()])
    with caplog.at_level(logging.INFO, logger="aibridge.interceptions"):
        addons.request_parsed(flow)
        addons.finding(flow, Usage("resp_1", 10, 5, 3, 0, {"reasoning_tokens": 2}))
        addons.finding(flow, ToolCall("resp_1", "call_1", "bash", '{"cmd":"ls"}'))
        addons.finding(flow, Thought("thinking"))
        addons.interception_ended(flow)
    lines = [orjson.loads(JSONFormatter().format(r)) for r in caplog.records]
    assert [line["record_type"] for line in lines] == [
        "interception_start", "prompt_usage", "token_usage", "tool_usage", "model_thought",
        "interception_end"]
    assert all(line["msg"] == MESSAGE and line["interception_id"] == str(flow.id) for line in lines)
    start, prompt, usage, tool = lines[:4]
    assert start["initiator_id"] == str(flow.actor.id) and start["model"] == "gpt-4.1"
    assert start["client"] == "Codex"
    assert prompt["prompt"] == "hello"
    assert usage["input_tokens"] == 10 and usage["metadata"] == {"reasoning_tokens": 2}
    assert tool["tool"] == "bash" and tool["injected"] is False
    assert "ended_at" in lines[-1]


def test_record_fields_never_clobber_log_record_attributes() -> None:
    fields = record_fields(rec.ThoughtRecord(uuid.uuid4(), "x", {}))
    logging.makeLogRecord({}).__dict__.update(fields)       # would raise in Logger.makeRecord if clashing
    assert set(fields) == {"interception_id", "content", "metadata", "id", "created_at"}


def test_injected_mcp_call_gets_a_span(spans: tuple[TracingAddon, InMemorySpanExporter]) -> None:
    addon, exporter = spans
    flow = make_flow()
    addon.request_parsed(flow)
    addon.finding(flow, ToolCall("msg_1", "toolu_1", "lookup", '{"key":"k"}', injected=True,
                                 server_url="http://mcp/mcp", started_ns=1_000, ended_ns=5_000))
    addon.finding(flow, ToolCall("msg_1", "toolu_2", "fail", "{}", injected=True, server_url="http://mcp/mcp",
                                 invocation_error="boom", started_ns=6_000, ended_ns=7_000))
    addon.finding(flow, ToolCall("msg_1", "toolu_3", "Bash", "{}"))          # the client's: no MCP span
    addon.interception_ended(flow)
    found = by_name(exporter.get_finished_spans())
    ok, failed = found["Intercept.ProcessRequest.MCPToolCall"]
    process = found["Intercept.ProcessRequest"][0]
    assert parent_id(ok) == process.context.span_id
    assert (ok.start_time, ok.end_time) == (1_000, 5_000)
    assert ok.attributes is not None and ok.attributes["mcp.tool"] == "lookup"
    assert ok.attributes["mcp.server_url"] == "http://mcp/mcp" and ok.status.is_ok
    assert failed.status.description == "boom"
