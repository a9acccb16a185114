"""Metrics, traces, structured logs and retention against a real server process and a fake upstream.

One server runs with everything on (Prometheus, OTLP traces to a receiver in this test, JSON
structured logs); a few real requests go through it, and each test checks one view of them.
"""

from __future__ import annotations

import datetime as dt
import gzip
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import sqlalchemy as sa
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from aibridge.config import postgres_async_url
from aibridge.store import records as rec
from aibridge.store import users as user_store
from aibridge.store.db import create_engine, migrate
from aibridge.store.schema import CHILD_TABLES, interceptions
from aibridge.store.writer import write_batch
from tests.fakes.upstream import FakeUpstream, expected_usage
from tests.harness import Client, Database, ServerProcess, free_port, wait_for

BRIDGE = "/api/v2/aibridge"
CLIENT_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN_ID = "b7ad6b7169203331"
TIMEOUT = aiohttp.ClientTimeout(total=30)
CHAT_MODEL = "gpt-4.1-scenario-tool"
MESSAGES_MODEL = "claude-sonnet-4-5-scenario-cached"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]     # (name, labels) → value


class OTLPReceiver:
    """A tiny OTLP/HTTP trace collector: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.service_names: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    self.service_names.add(attr.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


def attributes(span: Span) -> dict[str, Any]:
    def value(v: AnyValue) -> Any:
        return getattr(v, v.WhichOneof("value") or "string_value")
    return {a.key: value(a.value) for a in span.attributes}


@dataclass
class Traffic:
    """What the module's requests did, for the tests to check."""

    token: str
    user_id: str
    chat: dict[str, Any] = field(default_factory=dict)
    messages_stream: bytes = b""
    models_status: int = 0


# The fake and the collector depend on the database so that each backend's server gets fresh ones.
@pytest.fixture(scope="module")
async def fake(module_database: Database) -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture(scope="module")
async def receiver(module_database: Database) -> AsyncIterator[OTLPReceiver]:
    collector = OTLPReceiver()
    await collector.start()
    yield collector
    await collector.stop()


@pytest.fixture(scope="module")
async def server(module_database: Database, fake: FakeUpstream,
                 receiver: OTLPReceiver) -> AsyncIterator[ServerProcess]:
    env = {
        "CODER_AIBRIDGE_ENABLED": "true",
        "CODER_AIBRIDGE_OPENAI_KEY": "sk-openai-central",
        "CODER_AIBRIDGE_OPENAI_BASE_URL": fake.openai_base_url,
        "CODER_AIBRIDGE_ANTHROPIC_KEY": "sk-ant-central",
        "CODER_AIBRIDGE_ANTHROPIC_BASE_URL": fake.anthropic_base_url,
        "CODER_PROMETHEUS_ENABLE": "true",
        "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{free_port()}",
        "CODER_TRACE_ENABLE": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "CODER_AIBRIDGE_STRUCTURED_LOGGING": "true",
        "CODER_LOGGING_JSON": "true",
        "CODER_AIBRIDGE_SHUTDOWN_GRACE": "5s",
    }
    proc = await ServerProcess(module_database, env=env).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
async def traffic(server: ServerProcess) -> Traffic:
    token = server.create_user("observed")
    status, me = await Client(server.url, token).get("/api/v2/users/me")
    assert status == 200, me
    done = Traffic(token, me["id"])
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        done.chat = await _chat(session, server.url, token)
        done.messages_stream = await _messages_stream(session, server.url, token)
        async with session.get(f"{server.url}{BRIDGE}/openai/v1/models",
                               headers={"Authorization": f"Bearer {token}"}) as resp:
            await resp.read()
            done.models_status = resp.status
    return done


async def _chat(session: aiohttp.ClientSession, url: str, token: str) -> dict[str, Any]:
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Weather in Lisbon?"}],
            "tools": [{"type": "function", "function": {
                "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}
    async with session.post(f"{url}{BRIDGE}/openai/v1/chat/completions", json=body,
                            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def _messages_stream(session: aiohttp.ClientSession, url: str, token: str) -> bytes:
    body = {"model": MESSAGES_MODEL, "max_tokens": 256, "stream": True,
            "messages": [{"role": "user", "content": "Summarise the repo."}]}
    headers = {"X-Api-Key": token, "anthropic-version": "2023-06-01", "User-Agent": "claude-cli/2.0.14 (external, cli)",
               "traceparent": f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"}
    async with session.post(f"{url}{BRIDGE}/anthropic/v1/messages", json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


# ---------------------------------------------------------------- metrics

async def scrape(url: str, token: str = "") -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(url, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, metric: str, **labels: str) -> float | None:
    return samples.get(("coder_aibridged_" + metric, frozenset(labels.items())))


async def test_metrics_count_the_traffic(server: ServerProcess, traffic: Traffic) -> None:
    who = {"initiator_id": traffic.user_id}
    chat = {"provider": "openai", "model": CHAT_MODEL}
    msgs = {"provider": "anthropic", "model": MESSAGES_MODEL}

    async def settled() -> Samples | None:
        samples = await scrape(server.url + "/metrics", server.admin_token)
        done = value(samples, "interceptions_total", status="success", route="/v1/messages", method="POST",
                     client="Claude Code", **msgs, **who)
        return samples if done == 1 else None

    samples = await wait_for(settled, timeout=10)
    assert samples, "the streamed interception was never counted"
    assert value(samples, "interceptions_total", status="success", route="/v1/chat/completions", method="POST",
                 client="Unknown", **chat, **who) == 1
    for labels, route in ((chat, "/v1/chat/completions"), (msgs, "/v1/messages")):
        assert value(samples, "interceptions_inflight", route=route, **labels) == 0
        assert value(samples, "interceptions_duration_seconds_count", **labels) == 1
        assert value(samples, "upstream_overhead_seconds_count", provider=labels["provider"], route=route) == 1
    usage = {"chat": expected_usage("chat", "tool"), "messages": expected_usage("messages", "cached", streaming=True)}
    for api, labels, client in (("chat", chat, "Unknown"), ("messages", msgs, "Claude Code")):
        for kind in ("input", "output", "cache_read", "cache_write"):
            want = usage[api][f"{kind}_tokens" if kind in ("input", "output") else f"{kind}_input_tokens"]
            got = value(samples, "tokens_total", type=kind, client=client, **labels, **who)
            assert (got or 0) == want, (api, kind)
        assert value(samples, "prompts_total", client=client, **labels, **who) == 1
    assert value(samples, "non_injected_tool_selections_total", name="get_weather", **chat) == 1
    assert traffic.models_status == 200
    assert value(samples, "passthrough_total", provider="openai", route="/v1/models", method="GET") == 1


async def test_metrics_are_also_on_the_prometheus_address(server: ServerProcess, traffic: Traffic) -> None:
    address = server.env["CODER_PROMETHEUS_ADDRESS"]
    own = await scrape(f"http://{address}/metrics")
    main = await scrape(server.url + "/metrics", server.admin_token)
    key = ("coder_aibridged_passthrough_total",
           frozenset({"provider": "openai", "route": "/v1/models", "method": "GET"}.items()))
    assert own[key] == main[key] == 1
    assert ("coder_aibridged_purged_interceptions_total", frozenset()) in own


# ---------------------------------------------------------------- traces

async def test_spans_reach_the_otlp_collector(receiver: OTLPReceiver, fake: FakeUpstream, traffic: Traffic) -> None:
    async def exported() -> bool:
        return len(receiver.named("Intercept")) >= 2 and len(receiver.named("Passthrough")) >= 1
    assert await wait_for(exported, timeout=15), [s.name for s in receiver.spans]
    assert receiver.service_names == {"aibridge"}

    root = next(s for s in receiver.named("Intercept") if attributes(s)["provider"] == "anthropic")
    # The client's W3C trace context is continued...
    assert root.trace_id.hex() == CLIENT_TRACE_ID and root.parent_span_id.hex() == CLIENT_SPAN_ID
    attrs = attributes(root)
    uuid.UUID(attrs["interception_id"])
    assert attrs | {"interception_id": ""} == {
        "interception_id": "", "user_id": traffic.user_id, "provider": "anthropic", "model": MESSAGES_MODEL,
        "streaming": True, "request_path": f"{BRIDGE}/anthropic/v1/messages", "outcome": "success"}

    tree = [s for s in receiver.spans if s.trace_id == root.trace_id]
    named = {s.name: s for s in tree}
    process = named["Intercept.ProcessRequest"]
    for name in ("Intercept.CreateInterceptor", "Intercept.RecordInterception", "Intercept.ProcessRequest",
                 "Intercept.RecordInterceptionEnded"):
        assert named[name].parent_span_id == root.span_id, name
    for name in ("Intercept.ProcessRequest.Upstream", "Intercept.RecordPromptUsage", "Intercept.RecordTokenUsage"):
        assert named[name].parent_span_id == process.span_id, name
        assert attributes(named[name])["interception_id"] == attrs["interception_id"]

    # ...and propagated upstream, as a child of the Upstream span.
    sent = next(r for r in fake.requests if r.model == MESSAGES_MODEL)
    upstream = named["Intercept.ProcessRequest.Upstream"]
    assert sent.headers["traceparent"].startswith(f"00-{CLIENT_TRACE_ID}-{upstream.span_id.hex()}-")

    chat_root = next(s for s in receiver.named("Intercept") if attributes(s)["provider"] == "openai")
    assert not chat_root.parent_span_id       # no traceparent from that client: a trace of its own
    chat_names = {s.name for s in receiver.spans if s.trace_id == chat_root.trace_id}
    assert {"Intercept.RecordToolUsage", "Intercept.RecordTokenUsage",
            "Intercept.ProcessRequest.Upstream"} <= chat_names
    passthrough = attributes(receiver.named("Passthrough")[0])
    assert passthrough["passthrough_url"] == "/v1/models" and passthrough["http.response.status_code"] == 200


# ---------------------------------------------------------------- structured logs and secrets

def log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            lines.append(orjson.loads(line))
    return lines


async def test_structured_log_lines(server: ServerProcess, traffic: Traffic) -> None:
    async def logged() -> list[dict[str, Any]]:
        found = [d for d in log_lines(server) if d.get("msg") == "interception log"]
        return found if sum(d["record_type"] == "interception_end" for d in found) >= 2 else []
    lines = await wait_for(logged, timeout=10)
    assert lines, server.output()[-3000:]
    starts = {d["model"]: d for d in lines if d["record_type"] == "interception_start"}
    chat_id = starts[CHAT_MODEL]["interception_id"]
    chat = {d["record_type"]: d for d in lines if d["interception_id"] == chat_id}
    assert set(chat) == {"interception_start", "prompt_usage", "token_usage", "tool_usage", "interception_end"}
    start = chat["interception_start"]
    assert start["initiator_id"] == traffic.user_id and start["provider"] == "openai"
    assert start["api"] == "chat_completions" and start["logger"] == "aibridge.interceptions"
    assert chat["prompt_usage"]["prompt"] == "Weather in Lisbon?"
    assert chat["token_usage"]["input_tokens"] == expected_usage("chat", "tool")["input_tokens"]
    assert chat["tool_usage"]["tool"] == "get_weather" and chat["tool_usage"]["injected"] is False
    dt.datetime.fromisoformat(chat["interception_end"]["ended_at"])
    msgs_id = starts[MESSAGES_MODEL]["interception_id"]
    usage = next(d for d in lines if d["interception_id"] == msgs_id and d["record_type"] == "token_usage")
    assert usage["cache_read_input_tokens"] == expected_usage("messages", "cached")["cache_read_input_tokens"]
    assert starts[MESSAGES_MODEL]["client"] == "Claude Code"


async def test_no_token_or_provider_key_in_the_log(server: ServerProcess, fake: FakeUpstream,
                                                   traffic: Traffic) -> None:
    assert fake.requests, "no traffic reached the upstream"
    output = server.output()
    secret = traffic.token.split("-", 1)[1]
    for needle in (traffic.token, secret, "sk-openai-central", "sk-ant-central"):
        assert needle not in output, f"{needle[:6]}… leaked into the server log"


# ---------------------------------------------------------------- retention in a running server

async def test_server_purges_expired_records_at_start(database: Database) -> None:
    url = (postgres_async_url(database.postgres.url) if database.postgres
           else f"sqlite+aiosqlite:///{database.data_dir / 'aibridge.db'}")
    engine = create_engine(url)
    try:
        await migrate(engine)
        user = await user_store.create_user(engine, "old-timer", "member")
        now = dt.datetime.now(dt.UTC)
        old, new = await _insert(engine, user.id, now - dt.timedelta(days=45)), await _insert(engine, user.id, now)
        server = await ServerProcess(database, env={"CODER_AIBRIDGE_RETENTION": "30d"}).start()
        try:
            async def purged() -> bool:
                return await _ids(engine) == {new}
            assert await wait_for(purged, timeout=15), server.output()
            async with engine.connect() as conn:
                for table in CHILD_TABLES:
                    rows = set((await conn.execute(sa.select(table.c.interception_id))).scalars())
                    assert rows == {new}, table.name
            assert old not in await _ids(engine)
            assert "retention purge deleted 1 interceptions" in server.output()
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session, \
                    session.get(server.url + "/metrics") as resp:
                assert resp.status == 404          # Prometheus is off: no /metrics at all
        finally:
            server.stop()
    finally:
        await engine.dispose()


async def _insert(engine: Any, user_id: uuid.UUID, started: dt.datetime) -> uuid.UUID:
    iid = uuid.uuid4()
    await write_batch(engine, [
        rec.InterceptionStart(iid, user_id, "openai", "openai", "responses", "gpt-5", "Codex", None, "", {},
                              started_at=started),
        rec.PromptRecord(iid, "", "hi", {}, created_at=started),
        rec.TokenUsageRecord(iid, "resp_1", 1, 2, 0, 0, {}, created_at=started),
        rec.ToolUsageRecord(iid, "resp_1", "call_1", "shell", "{}", False, None, None, {}, created_at=started),
        rec.ThoughtRecord(iid, "hmm", {}, created_at=started),
        rec.InterceptionEnd(iid, ended_at=started),
    ])
    return iid


async def _ids(engine: Any) -> set[uuid.UUID]:
    async with engine.connect() as conn:
        return set((await conn.execute(sa.select(interceptions.c.id))).scalars())


async def test_metrics_on_the_main_port_need_an_owner_or_auditor(server: ServerProcess, traffic: Traffic) -> None:
    """Labels carry user ids: strangers and members are refused on the main port; the separate
    Prometheus listener stays open (it is meant for a scraper on a private address)."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(server.url + "/metrics") as resp:
            assert resp.status == 401
            assert traffic.user_id not in await resp.text()
        async with session.get(server.url + "/metrics", headers={"Authorization": f"Bearer {traffic.token}"}) as resp:
            assert resp.status == 403
            assert traffic.user_id not in await resp.text()
    auditor = server.create_user("metrics-auditor", role="auditor")
    assert await scrape(server.url + "/metrics", auditor)
    assert await scrape(f"http://{server.env['CODER_PROMETHEUS_ADDRESS']}/metrics")
