"""OpenTelemetry traces of the bridge, with Coder's span names (``--trace``).

One intercepted request gives this tree (all spans carry ``interception_id``, ``user_id``,
``provider``, ``model``, ``streaming`` and ``request_path``)::

    Intercept                                 request arrived → interception ended
      Intercept.CreateInterceptor             request arrived → request understood
      Intercept.RecordInterception            the start record handed to the recorder
      Intercept.ProcessRequest                request understood → answer relayed
        Intercept.RecordPromptUsage
        Intercept.ProcessRequest.Upstream     upstream call sent → upstream answered (per call)
        Intercept.RecordTokenUsage / RecordToolUsage / RecordModelThought   (per finding)
        Intercept.ProcessRequest.MCPToolCall  an injected MCP tool call run by the bridge
      Intercept.RecordInterceptionEnded

A passed-through request gives one ``Passthrough`` span. The ``Record*`` spans mark the moment
a record is handed to the recorder's queue: the database write happens later, in batches.

W3C trace context: a client's ``traceparent`` makes ``Intercept`` its child (read from the
flow's request headers; the span starts at the flow's arrival time), and each upstream call
carries the ``traceparent`` of its ``Upstream`` span. Passed-through requests forward the client's own
``traceparent`` unchanged.

Spans are exported over OTLP/HTTP configured by the standard ``OTEL_*`` variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, headers, sampler,
``OTEL_SERVICE_NAME``, …). When ``--trace`` is off nothing here is built or registered.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from aibridge.bridge.apis.base import Finding, ToolCall, Usage
from aibridge.bridge.flow import Addon, Flow, FlowKey
from aibridge.bridge.providers.base import UpstreamRequest
from aibridge.bridge.routing import ROUTE_PREFIX

TRACER_NAME = "aibridge"
DEFAULT_SERVICE_NAME = "aibridge"
PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(slots=True)
class FlowTrace:
    """The open spans of one interception (kept on the flow under ``SPANS``)."""

    attributes: dict[str, AttributeValue]
    root: Span
    root_ctx: Context
    process: Span
    process_ctx: Context
    upstream: Span | None = None


SPANS: FlowKey[FlowTrace] = FlowKey("tracing.spans")


def flow_attributes(flow: Flow) -> dict[str, AttributeValue]:
    return {
        "interception_id": str(flow.id),
        "user_id": str(flow.actor.id),
        "provider": flow.provider.name,
        "model": flow.model,
        "streaming": flow.streaming,
        "request_path": ROUTE_PREFIX + flow.provider.name + flow.route,
        **({"door": flow.door} if flow.door != "bridge" else {}),     # e.g. "proxy"
    }


class TracingAddon(Addon):
    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer(TRACER_NAME)

    @classmethod
    def from_env(cls, processor: SpanProcessor | None = None) -> TracingAddon:
        """OTLP/HTTP export configured by the standard OTEL_* variables (or the given processor)."""
        # OTEL_SERVICE_NAME, when set, names the service; ours is only the default.
        attributes: dict[str, Any] = {} if os.environ.get("OTEL_SERVICE_NAME") else {
            SERVICE_NAME: DEFAULT_SERVICE_NAME}
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(processor or BatchSpanProcessor(_otlp_exporter()))
        return cls(provider)

    async def close(self) -> None:
        """Export what is still queued (bounded by the exporter's own timeout)."""
        await asyncio.to_thread(self.provider.shutdown)

    def _instant(self, name: str, parent: Context, attributes: dict[str, AttributeValue]) -> None:
        self.tracer.start_span(name, context=parent, attributes=attributes).end()

    def request_parsed(self, flow: Flow) -> None:
        parent = PROPAGATOR.extract(flow.headers)
        attrs = flow_attributes(flow)
        root = self.tracer.start_span("Intercept", context=parent, kind=SpanKind.SERVER,
                                      attributes=attrs, start_time=flow.arrived_ns)
        root_ctx = trace.set_span_in_context(root, parent)
        self.tracer.start_span("Intercept.CreateInterceptor", context=root_ctx, attributes=attrs,
                               start_time=flow.arrived_ns).end()
        self._instant("Intercept.RecordInterception", root_ctx, attrs)
        process = self.tracer.start_span("Intercept.ProcessRequest", context=root_ctx, attributes=attrs)
        state = FlowTrace(attrs, root, root_ctx, process, trace.set_span_in_context(process, root_ctx))
        if flow.info.prompt:
            self._instant("Intercept.RecordPromptUsage", state.process_ctx, attrs)
        flow.put(SPANS, state)

    def upstream_request(self, flow: Flow, request: UpstreamRequest) -> None:
        state = flow.get(SPANS)
        if state is None:
            return
        _end(state.upstream)
        state.upstream = self.tracer.start_span(
            "Intercept.ProcessRequest.Upstream", context=state.process_ctx, kind=SpanKind.CLIENT,
            attributes=state.attributes)
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, context=trace.set_span_in_context(state.upstream, state.process_ctx))
        for name, value in carrier.items():
            request.headers[name] = value       # replaces the client's own traceparent, if any

    def upstream_response(self, flow: Flow) -> None:
        state = flow.get(SPANS)
        if state is None or state.upstream is None:
            return
        if flow.upstream_status is not None:
            state.upstream.set_attribute("http.response.status_code", flow.upstream_status)
        if flow.upstream_status is None or flow.upstream_status >= 400:
            state.upstream.set_status(Status(StatusCode.ERROR, flow.error or "upstream error"))
        _end(state.upstream)
        state.upstream = None

    def finding(self, flow: Flow, finding: Finding) -> None:
        state = flow.get(SPANS)
        if state is None:
            return
        if isinstance(finding, Usage):
            name = "Intercept.RecordTokenUsage"
        elif isinstance(finding, ToolCall):
            name = "Intercept.RecordToolUsage"
            if finding.injected and finding.started_ns is not None:
                self._mcp_call(state.process_ctx, state.attributes, finding)
        else:
            name = "Intercept.RecordModelThought"
        self._instant(name, state.process_ctx, state.attributes)

    def _mcp_call(self, parent: Context, attributes: dict[str, AttributeValue], call: ToolCall) -> None:
        """A span per injected MCP tool call, over the time the bridge waited for it."""
        span = self.tracer.start_span("Intercept.ProcessRequest.MCPToolCall", context=parent,
                                      start_time=call.started_ns, attributes={**attributes, "mcp.tool": call.name,
                                                  "mcp.server_url": call.server_url or "",
                                                  "mcp.tool_call_id": call.call_id})
        if call.invocation_error:
            span.set_status(Status(StatusCode.ERROR, call.invocation_error))
        span.end(end_time=call.ended_ns)

    def interception_ended(self, flow: Flow) -> None:
        state = flow.pop(SPANS)
        if state is None:
            return
        _end(state.upstream)
        for span in (state.process, state.root):
            span.set_attribute("outcome", flow.outcome)
            if flow.outcome != "success":
                span.set_status(Status(StatusCode.ERROR, flow.error or flow.outcome))
        state.process.end()
        self._instant("Intercept.RecordInterceptionEnded", state.root_ctx, state.attributes)
        state.root.end()

    def passthrough(self, flow: Flow) -> None:
        route, provider = flow.route, flow.provider.name
        status = flow.upstream_status or 502        # none: the upstream could not be reached
        attrs: dict[str, AttributeValue] = {
            "provider": provider, "request_path": ROUTE_PREFIX + provider + route,
            "passthrough_url": route, "passthrough_method": flow.method, "http.response.status_code": status}
        span = self.tracer.start_span("Passthrough", context=PROPAGATOR.extract(flow.headers),
                                      kind=SpanKind.SERVER, attributes=attrs, start_time=flow.arrived_ns or None)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, f"upstream answered {status}"))
        span.end()


def _end(span: Span | None) -> None:
    if span is not None and span.is_recording():
        span.end()


def _otlp_exporter() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
