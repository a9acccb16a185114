"""Prometheus metrics of the bridge (DESIGN §2.5), all prefixed ``coder_aibridged_``.

The names and labels are Coder's, so its Grafana dashboards work unchanged; our own additions
are ``upstream_overhead_seconds`` (bridge time excluding time spent waiting on the upstream)
and ``purged_interceptions_total`` (rows removed by the retention purge).

- Everything lives in a dedicated ``CollectorRegistry`` (never the process-global one), so two
  servers in one process, or tests, never see each other's numbers.
- Disabled means free: when ``--prometheus-enable`` is off the server neither builds
  ``Metrics`` nor registers ``MetricsAddon``, so the flow pays nothing.
- Label values a client chooses (model, tool name, client, passthrough route) are bounded: at
  most N distinct values per process, the rest reported as ``other``, and truncated, so a
  client cannot blow up the number of series.

Several worker processes (``--workers N``): the supervisor calls ``enable_multiprocess`` with an
empty directory before it forks the workers. prometheus_client then keeps every counter,
histogram and gauge in per-process files there, the in-flight gauge is summed over live
processes (``multiprocess_mode="livesum"``), and ``render`` (in whichever worker answers the
scrape) reads every process's files through ``MultiProcessCollector``. The supervisor calls
``worker_exited(pid)`` for a worker that exits, so its live gauges go and its counts stay.
Values read when scraped (``Metrics.watch``: what the addons' ``collectors()`` return, circuit
states, purge counts) live in one worker's memory, so each worker also writes them to
``watched_<pid>.json`` in that directory every second (and at once when it answers a scrape);
``render`` merges them: counters summed over every worker that ever ran, gauges taken at their
highest over the live workers (a circuit open in any worker shows as open).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as prometheus_values
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from aibridge.bridge.apis.base import Finding, ToolCall, Usage
from aibridge.bridge.flow import Addon, Flow, FlowKey
from aibridge.bridge.scrape import METRIC_PREFIX, BoundedLabel, Collector
from aibridge.bridge.scrape import OTHER as OTHER  # re-exported: the label that stands for the rest

log = logging.getLogger("aibridge.metrics")

DURATION_BUCKETS = (0.5, 2, 5, 15, 30, 60, 120)
# The bridge's own time is sub-millisecond when healthy; these resolve 0.5 ms up to 0.5 s.
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PUBLISH_INTERVAL = 1.0

# Path segments kept as they are in a passthrough route label; anything else (model ids,
# response ids, conversation ids) becomes "*" so the label stays bounded.
_ROUTE_WORDS = frozenset({
    "v1", "api", "models", "messages", "count_tokens", "conversations", "responses", "items",
    "input_items", "cancel", "event_logging", "batch", "chat", "completions", "embeddings", "compact",
})


def route_label(route: str) -> str:
    """``/v1/models/gpt-4o`` → ``/v1/models/*``: ids in a passthrough path are not labels."""
    segments = route.strip("/").split("/")
    return "/" + "/".join(s if s in _ROUTE_WORDS else "*" for s in segments)


class Metrics:
    """The bridge's collectors, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None, *, max_models: int = 100,
                 max_tools: int = 200, max_clients: int = 50, max_routes: int = 50) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.watched: list[Collector] = []
        self.model_label = BoundedLabel(max_models)
        self.tool_label = BoundedLabel(max_tools)
        self.client_label = BoundedLabel(max_clients, 64)
        self.route_label = BoundedLabel(max_routes)
        self.server_label = BoundedLabel(max_tools)
        self._define_interception_metrics()
        self._define_usage_metrics()
        self._define_resilience_metrics()
        self._define_governance_metrics()

    def _counter(self, name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(METRIC_PREFIX + name, doc, labels, registry=self.registry)

    def _define_interception_metrics(self) -> None:
        self.interceptions = self._counter(
            "interceptions_total", "The count of intercepted requests.",
            ("provider", "model", "status", "route", "method", "initiator_id", "client"))
        self.inflight = Gauge(
            METRIC_PREFIX + "interceptions_inflight",
            "The number of intercepted requests which are being processed.",
            ("provider", "model", "route"), registry=self.registry, multiprocess_mode="livesum")
        self.duration = Histogram(
            METRIC_PREFIX + "interceptions_duration_seconds",
            "The total duration of intercepted requests, in seconds (mostly upstream processing).",
            ("provider", "model"), registry=self.registry, buckets=DURATION_BUCKETS)
        self.overhead = Histogram(
            METRIC_PREFIX + "upstream_overhead_seconds",
            "Time the bridge spent on an interception, excluding waiting on the upstream, in seconds.",
            ("provider", "route"), registry=self.registry, buckets=OVERHEAD_BUCKETS)
        self.passthrough = self._counter(
            "passthrough_total",
            "The count of requests which were not intercepted but passed through to the upstream.",
            ("provider", "route", "method"))

    def _define_usage_metrics(self) -> None:
        self.prompts = self._counter(
            "prompts_total", "The number of prompts issued by users (initiators).",
            ("provider", "model", "initiator_id", "client"))
        self.tokens = self._counter(
            "tokens_total", "The number of tokens used by intercepted requests.",
            ("provider", "model", "type", "initiator_id", "client"))
        self.injected_tools = self._counter(
            "injected_tool_invocations_total",
            "The number of times an injected MCP tool was invoked by aibridge.",
            ("provider", "model", "server", "name"))
        self.client_tools = self._counter(
            "non_injected_tool_selections_total",
            "The number of times an AI model selected a tool to be invoked by the client.",
            ("provider", "model", "name"))
        self.mcp_errors = self._counter(
            "mcp_server_errors_total",
            "MCP server operations that failed (list: its tools are skipped until a retry succeeds; call).",
            ("server", "operation"))

    def _define_resilience_metrics(self) -> None:
        labels = ("provider", "endpoint", "model")
        self.breaker_rejects = self._counter(
            "circuit_breaker_rejects_total",
            "Total number of requests rejected due to open circuit breaker.", labels)
        self.limited = self._counter(
            "rate_limited_total",
            "Requests refused by the per-user rate limit or the concurrency limit (reason).",
            ("provider", "reason"))

    def _define_governance_metrics(self) -> None:
        self.cost = self._counter(
            "cost_total", "The cost of intercepted requests in USD, priced from their token usage.",
            ("provider", "model", "client"))
        self.budget_rejections = self._counter(
            "budget_rejections_total",
            "Requests refused before any upstream call: over budget (budget), a model not allowed "
            "(model_not_allowed), another user's stored response or conversation (not_owner), or its "
            "owner unknown while the database is down (ownership_unavailable).", ("reason",))

    def watch(self, *collectors: Collector) -> None:
        """Values that live elsewhere (what the addons' ``collectors()`` return), read when scraped."""
        for collector in collectors:
            self.registry.register(collector)
            self.watched.append(collector)

    def render(self) -> bytes:
        """The text exposition; across processes when prometheus_client's multiprocess mode is on."""
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            publish_watched(self.watched, directory)
            registry = CollectorRegistry()
            MultiProcessCollector(registry)     # type: ignore[no-untyped-call]
            registry.register(WatchedFiles(directory))
            return generate_latest(registry)
        return generate_latest(self.registry)

    async def handle(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def enable_multiprocess(directory: str) -> None:
    """Before forking workers: every metric built after this keeps its values in ``directory``."""
    os.environ[MULTIPROC_ENV] = directory
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue()     # type: ignore[no-untyped-call]


def worker_exited(pid: int) -> None:
    """A worker is gone: drop its live gauges (its counters stay in the totals)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        mark_process_dead(pid, directory)     # type: ignore[no-untyped-call]


def publish_watched(collectors: Iterable[Collector], directory: str) -> None:
    """This process's watched values, as JSON, for the worker that answers the next scrape."""
    families = [{"name": m.name, "type": m.type, "help": m.documentation,
                 "samples": [[s.name, s.labels, s.value] for s in m.samples]}
                for collector in collectors for m in collector.collect()]
    path = os.path.join(directory, f"watched_{os.getpid()}.json")
    with open(path + ".tmp", "wb") as fh:
        fh.write(orjson.dumps(families))
    os.replace(path + ".tmp", path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WatchedFiles:
    """Merges every worker's ``watched_<pid>.json``: counters summed, live workers' gauges at their highest."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        values: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
        for path in sorted(glob.glob(os.path.join(self.directory, "watched_*.json"))):
            pid = int(os.path.basename(path)[8:-5])
            try:
                with open(path, "rb") as fh:
                    families = orjson.loads(fh.read())
            except (OSError, orjson.JSONDecodeError):
                continue
            for family in families:
                if family["type"] == "gauge" and not _alive(pid):
                    continue
                merged.setdefault(family["name"], Metric(family["name"], family["help"], family["type"]))
                for name, labels, value in family["samples"]:
                    key = (family["name"], name, tuple(sorted(labels.items())))
                    old = values.get(key)
                    if old is None:
                        values[key] = value
                    else:
                        values[key] = max(old, value) if family["type"] == "gauge" else old + value
        for (family_name, name, labels), value in values.items():
            merged[family_name].add_sample(name, dict(labels), value)
        yield from merged.values()


@dataclass(slots=True, frozen=True)
class _Labels:
    """Label values of one flow, computed once when it starts."""

    provider: str
    model: str
    route: str
    method: str
    initiator: str
    client: str


GOVERNANCE_REFUSALS = frozenset({"budget", "model_not_allowed", "not_owner", "ownership_unavailable"})
LABELS: FlowKey[_Labels] = FlowKey("metrics.labels")    # set while the flow is counted in flight


class MetricsAddon(Addon):
    """Counts interceptions, refusals, tokens, prompts and tools as the flow reports them."""

    def __init__(self, metrics: Metrics, listen_address: str | None = None) -> None:
        self.metrics = metrics
        self.listener = MetricsListener(metrics, listen_address) if listen_address else None
        self._publisher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.listener is not None:
            await self.listener.start()
        directory = os.environ.get(MULTIPROC_ENV)
        if directory and self.metrics.watched:
            self._publisher = asyncio.create_task(self._publish(directory), name="metrics-publisher")

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            publish_watched(self.metrics.watched, os.environ[MULTIPROC_ENV])     # the last counts stay

    async def _publish(self, directory: str) -> None:
        while True:
            try:
                publish_watched(self.metrics.watched, directory)
            except OSError as exc:
                log.warning("cannot write metrics for other workers to %s: %s", directory, exc)
            await asyncio.sleep(PUBLISH_INTERVAL)

    def _labels(self, flow: Flow) -> _Labels:
        labels = flow.get(LABELS)
        if labels is None:
            m = self.metrics
            labels = _Labels(flow.provider.name, m.model_label(flow.model), flow.route, flow.method,
                             str(flow.actor.id), m.client_label(flow.client))
        return labels

    def refused(self, flow: Flow) -> None:
        m = self.metrics
        if flow.refusal == "circuit_open":
            m.breaker_rejects.labels(flow.provider.name, flow.route, m.model_label(flow.model)).inc()
        elif flow.refusal in GOVERNANCE_REFUSALS:
            m.budget_rejections.labels(flow.refusal).inc()
        else:
            m.limited.labels(flow.provider.name, flow.refusal or "refused").inc()

    def request_parsed(self, flow: Flow) -> None:
        labels = self._labels(flow)
        flow.put(LABELS, labels)
        self.metrics.inflight.labels(labels.provider, labels.model, labels.route).inc()
        if flow.info.prompt:
            self.metrics.prompts.labels(labels.provider, labels.model, labels.initiator, labels.client).inc()

    def finding(self, flow: Flow, finding: Finding) -> None:
        labels = self._labels(flow)
        m = self.metrics
        if isinstance(finding, Usage):
            self._count_tokens(labels, finding)
        elif isinstance(finding, ToolCall) and finding.injected:
            m.injected_tools.labels(labels.provider, labels.model, m.server_label(finding.server_url or ""),
                                    m.tool_label(finding.name)).inc()
        elif isinstance(finding, ToolCall):
            m.client_tools.labels(labels.provider, labels.model, m.tool_label(finding.name)).inc()

    def _count_tokens(self, labels: _Labels, usage: Usage) -> None:
        for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens),
                            ("cache_read", usage.cache_read_input_tokens),
                            ("cache_write", usage.cache_write_input_tokens)):
            if count > 0:
                self.metrics.tokens.labels(labels.provider, labels.model, kind, labels.initiator,
                                           labels.client).inc(count)

    def interception_ended(self, flow: Flow) -> None:
        labels = flow.pop(LABELS)
        m = self.metrics
        if labels is not None:      # only what request_parsed counted in goes out
            m.inflight.labels(labels.provider, labels.model, labels.route).dec()
        else:
            labels = self._labels(flow)
        elapsed = time.perf_counter() - flow.started
        m.interceptions.labels(labels.provider, labels.model, flow.outcome, labels.route, labels.method,
                               labels.initiator, labels.client).inc()
        m.duration.labels(labels.provider, labels.model).observe(elapsed)
        if flow.cost_usd:
            m.cost.labels(labels.provider, labels.model, labels.client).inc(flow.cost_usd)
        m.overhead.labels(labels.provider, labels.route).observe(max(0.0, elapsed - flow.upstream_seconds))

    def passthrough(self, flow: Flow) -> None:
        m = self.metrics
        m.passthrough.labels(flow.provider.name, m.route_label(route_label(flow.route)), flow.method[:16]).inc()


class MetricsListener:
    """``/metrics`` on its own address (``--prometheus-address``), beside the main server's."""

    def __init__(self, metrics: Metrics, address: str) -> None:
        self.metrics = metrics
        self.address = address
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = self.address.rsplit(":", 1)
        try:
            await web.TCPSite(runner, host, int(port), reuse_address=True).start()
        except OSError as exc:
            await runner.cleanup()
            raise SystemExit(f"error: --prometheus-address: cannot listen on {self.address}: "
                             f"{exc.strerror}") from None
        self._runner = runner
        log.info("serving Prometheus metrics on http://%s/metrics", self.address)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
