"""The Grafana dashboard (deploy/grafana/aibridge.json) against real data.

Every SQL query of the dashboard runs on a real PostgreSQL filled by real bridge traffic (a server
process, the official SDKs, the fake upstream), with Grafana's macros and template variables
substituted the way Grafana does, and must return exactly what that traffic produced. Every metric a
Prometheus panel uses must be one the server exports on /metrics.

PostgreSQL only (the dashboard reads the database the way Grafana's PostgreSQL datasource would):
runs when AIBRIDGE_TEST_POSTGRES_URL is set; an unreachable server then fails the session.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import openai
import pytest

from tests.fakes.upstream import FakeUpstream, expected_usage
from tests.harness import POSTGRES_URL, Client, Database, ServerProcess, free_port, wait_for

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs AIBRIDGE_TEST_POSTGRES_URL (PostgreSQL)")

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "aibridge.json"
PG_UID = "${postgres}"
PROM_UID = "${prometheus}"
TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens")
COLUMNS = ("input", "output", "cache_read", "cache_write")     # the dashboard's names for TOKEN_KEYS
VARIABLES = ("username", "provider", "model", "client")
CLAUDE_CODE = {"User-Agent": "claude-cli/2.1.197 (external, cli)", "X-Claude-Code-Session-Id": "sess-graf-1"}
CODEX = {"originator": "codex_exec", "session-id": "codex-graf-1"}
INJECTED_ERROR = "MCP server http://mcp.example.test/mcp: connection refused"


# ------------------------------------------------------------------ the dashboard's queries

def load_dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def sql_queries(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    """Panel title (or ``var:NAME``) → its SQL queries."""
    found: dict[str, list[str]] = {}
    for panel in all_panels(doc["panels"]):
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
            if uid == PG_UID:
                found.setdefault(panel["title"], []).append(target["rawSql"])
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == PG_UID, var["name"]
            found[f"var:{var['name']}"] = [var["query"] if isinstance(var["query"], str) else var["query"]["query"]]
    return found


def prom_exprs(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for panel in all_panels(doc["panels"]):
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
            if uid == PROM_UID:
                found.setdefault(panel["title"], []).append(target["expr"])
    return found


_REGEX_META = re.compile(r"[\\^$*+?.()|\[\]{}/]")          # what Grafana's regex format escapes
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def regex_value(values: list[str] | None) -> str:
    """What Grafana puts in for ``${var:regex}``: the All value (".*" here), or escaped values."""
    if values is None:
        return ".*"
    escaped = [_REGEX_META.sub(lambda m: "\\" + m.group(0), v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


@dataclass
class Query:
    """Grafana's side of a query: the time range and the template variables' selections."""

    start: dt.datetime
    end: dt.datetime
    selected: dict[str, list[str]] = field(default_factory=dict)   # variable → values; missing = All
    interval: str = "1h"

    def render(self, sql: str) -> str:
        def group(m: re.Match[str], alias: bool) -> str:
            interval = m.group(2).strip().strip("'")
            unit = re.fullmatch(r"(\d+)([smhdw])", interval)
            assert unit, interval
            seconds = int(unit.group(1)) * _UNITS[unit.group(2)]
            expr = f"to_timestamp(floor(extract(epoch from {m.group(1).strip()}) / {seconds}) * {seconds})"
            return expr + (' AS "time"' if alias else "")

        out = sql.replace("$__interval", self.interval)
        out = re.sub(r"\$__timeGroupAlias\(([^,()]+),([^()]+)\)", lambda m: group(m, True), out)
        out = re.sub(r"\$__timeGroup\(([^,()]+),([^()]+)\)", lambda m: group(m, False), out)
        out = re.sub(r"\$__timeFilter\(([^()]+)\)",
                     lambda m: f"{m.group(1).strip()} BETWEEN '{self.start.isoformat()}' AND '{self.end.isoformat()}'",
                     out)
        for name in VARIABLES:
            value = regex_value(self.selected.get(name))
            out = out.replace(f"${{{name}:regex}}", value)
        leftover = re.search(r"\$(__\w+|\{\w+|[A-Za-z_]\w*)", out)
        assert leftover is None, f"unsubstituted {leftover.group(0) if leftover else ''} in:\n{out}"
        return out


# ------------------------------------------------------------------ traffic and the server

@dataclass(frozen=True)
class Call:
    user: str
    api: str          # chat | responses | messages
    scenario: str
    model: str
    client: str       # as the bridge should detect it
    prompt: str
    stream: bool
    headers: Mapping[str, str] = field(default_factory=dict)


TRAFFIC = (
    Call("gina", "chat", "simple", "gpt-4.1", "Unknown", "gina asks about tea", False),
    Call("gina", "chat", "cached", "gpt-4.1-scenario-cached", "Unknown", "gina again, cached", True),
    Call("gina", "messages", "cached", "claude-sonnet-4-5-scenario-cached", "Claude Code", "gina in claude code",
         True, CLAUDE_CODE),
    Call("gina", "responses", "tool", "gpt-5-codex-scenario-tool", "Codex", "gina lists files", True, CODEX),
    Call("hugo", "messages", "tool", "claude-sonnet-4-5-scenario-tool", "Claude Code", "hugo wants the weather",
         False, CLAUDE_CODE),
    Call("hugo", "chat", "simple", "gpt-4.1", "Unknown", "hugo says hi", False),
)
PROVIDER = {"chat": "openai", "responses": "openai", "messages": "anthropic"}


def usage_of(call: Call) -> dict[str, int]:
    want = expected_usage(call.api, call.scenario, streaming=call.stream)
    return {k: want.get(k, 0) for k in TOKEN_KEYS}


def expected_leaderboard(calls: tuple[Call, ...] = TRAFFIC) -> dict[str, tuple[int, ...]]:
    board: dict[str, list[int]] = {}
    for call in calls:
        sums = board.setdefault(call.user, [0, 0, 0, 0])
        for n, key in enumerate(TOKEN_KEYS):
            sums[n] += usage_of(call)[key]
    return {user: tuple(sums) for user, sums in board.items()}


async def send(server: ServerProcess, token: str, call: Call) -> None:
    headers = dict(call.headers)
    if call.api == "messages":
        an = anthropic.AsyncAnthropic(base_url=f"{server.url}/api/v2/aibridge/anthropic", api_key=token,
                                      default_headers=headers, max_retries=0, timeout=30)
        messages: list[Any] = [{"role": "user", "content": call.prompt}]
        if call.stream:
            async with an.messages.stream(model=call.model, max_tokens=256, messages=messages) as message_stream:
                await message_stream.get_final_message()
        else:
            await an.messages.create(model=call.model, max_tokens=256, messages=messages)
        return
    oa = openai.AsyncOpenAI(base_url=f"{server.url}/api/v2/aibridge/openai/v1", api_key=token,
                            default_headers=headers, max_retries=0, timeout=30)
    if call.api == "responses":
        if call.stream:
            events = await oa.responses.create(model=call.model, input=call.prompt, stream=True)
            async for _ in events:
                pass
        else:
            await oa.responses.create(model=call.model, input=call.prompt)
        return
    chat: list[Any] = [{"role": "user", "content": call.prompt}]
    if call.stream:
        chunks = await oa.chat.completions.create(model=call.model, messages=chat, stream=True)
        async for _ in chunks:
            pass
    else:
        await oa.chat.completions.create(model=call.model, messages=chat)


async def make_user(server: ServerProcess, username: str) -> str:
    return server.create_user(username)


@dataclass
class Filled:
    server: ServerProcess
    db: Database
    started: dt.datetime
    export: list[dict[str, Any]]          # every interception, as the REST export gives it
    metrics_text: str
    error_tool_id: uuid.UUID

    async def run(self, sql: str, query: Query) -> list[dict[str, Any]]:
        assert self.db.postgres is not None
        conn = await asyncpg.connect(self.db.postgres.url, timeout=10)
        try:
            rows = await asyncio.wait_for(conn.fetch(query.render(sql)), 30)
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    def window(self, **selected: list[str]) -> Query:
        now = dt.datetime.now(dt.UTC)
        return Query(self.started - dt.timedelta(hours=1), now + dt.timedelta(hours=1), dict(selected))


@pytest.fixture(scope="module")
async def filled() -> AsyncIterator[Filled]:
    fake = FakeUpstream()
    await fake.start()
    started = dt.datetime.now(dt.UTC)
    async with Database("postgres") as db:
        server = await ServerProcess(db, env={
            "CODER_AIBRIDGE_ENABLED": "true",
            "CODER_AIBRIDGE_OPENAI_KEY": "sk-openai-central",
            "CODER_AIBRIDGE_OPENAI_BASE_URL": f"{fake.url}/v1/",
            "CODER_AIBRIDGE_ANTHROPIC_KEY": "sk-ant-central",
            "CODER_AIBRIDGE_ANTHROPIC_BASE_URL": f"{fake.url}/",
            "CODER_AIBRIDGE_SHUTDOWN_GRACE": "5s",
            "CODER_PROMETHEUS_ENABLE": "true",
            "CODER_PROMETHEUS_ADDRESS": f"127.0.0.1:{free_port()}",
        }).start()
        try:
            tokens = {name: await make_user(server, name) for name in ("gina", "hugo", "ivy")}
            for call in TRAFFIC:
                await asyncio.wait_for(send(server, tokens[call.user], call), 60)
            # A passthrough request, so the passthrough series exists too.
            oa = openai.AsyncOpenAI(base_url=f"{server.url}/api/v2/aibridge/openai/v1", api_key=tokens["ivy"],
                                    max_retries=0, timeout=30)
            await oa.models.list()

            owner = Client(server.url, server.admin_token)

            async def everything() -> list[dict[str, Any]] | None:
                status, body = await owner.get("/api/v2/aibridge/interceptions?limit=1000")
                assert status == 200, body
                results: list[dict[str, Any]] = body["results"]
                return results if len(results) >= len(TRAFFIC) else None

            export = await wait_for(everything, timeout=20)
            assert export is not None and len(export) == len(TRAFFIC), "the recorder did not write the traffic"

            # No bridge path records a failed tool invocation yet (that needs MCP injection): add one
            # injected tool call with an error to a real interception, as the MCP loop will record it.
            tool_interception = next(r for r in export if r["model"] == "claude-sonnet-4-5-scenario-tool")
            error_id = uuid.uuid4()
            assert db.postgres is not None
            conn = await asyncpg.connect(db.postgres.url, timeout=10)
            try:
                await conn.execute(
                    "INSERT INTO aibridge_tool_usages (id, interception_id, provider_response_id, "
                    "provider_tool_call_id, server_url, tool, input, injected, invocation_error, metadata, "
                    "created_at) VALUES ($1, $2, 'msg_x', 'toolu_x', 'http://mcp.example.test/mcp', "
                    "'coder_list_workspaces', '{}', true, $3, '{}'::jsonb, now())",
                    error_id, uuid.UUID(tool_interception["id"]), INJECTED_ERROR)
            finally:
                await conn.close()

            status, metrics = await owner.get("/metrics")
            assert status == 200, f"/metrics answered {status} with CODER_PROMETHEUS_ENABLE=true"
            assert isinstance(metrics, str), metrics
            yield Filled(server, db, started, export, metrics, error_id)
        finally:
            server.stop()
            await fake.stop()


# ------------------------------------------------------------------ the dashboard itself

def test_dashboard_is_importable_json() -> None:
    doc = load_dashboard()
    assert doc["uid"] == "aibridge" and doc["title"] and doc["id"] is None
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["postgres"]["type"] == "datasource"
    assert variables["postgres"]["query"] == "grafana-postgresql-datasource"
    assert variables["prometheus"]["type"] == "datasource" and variables["prometheus"]["query"] == "prometheus"
    for name in VARIABLES:
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    ids = [p["id"] for p in all_panels(doc["panels"])]
    assert len(ids) == len(set(ids))
    for panel in all_panels(doc["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in (PG_UID, PROM_UID), panel["title"]
        assert panel["targets"], panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
    for title, queries in sql_queries(doc).items():
        if not title.startswith("var:"):
            assert all("$__timeFilter(i.started_at)" in q for q in queries), title


def test_tool_call_errors_are_highlighted() -> None:
    doc = load_dashboard()
    [table] = [p for p in all_panels(doc["panels"]) if p["title"] == "Tool calls (errors in red)"]
    [override] = [o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "invocation_error"]
    props = {p["id"]: p["value"] for p in override["properties"]}
    assert props["custom.cellOptions"] == {"type": "color-background", "applyToRow": True}
    colors = {m["type"]: m["options"]["result"]["color"] for m in props["mappings"]}
    assert colors["regex"] == "red" and colors["special"] != "red"
    assert "t.invocation_error" in table["targets"][0]["rawSql"]


# ------------------------------------------------------------------ every SQL query on real data

EXPECTED_SQL_PANELS = {
    "Total tokens", "Token usage per user", "Top models", "Top clients", "Interceptions over time per user",
    "Tokens over time", "Prompts", "Tool calls", "Tool calls (errors in red)",
    "var:username", "var:provider", "var:model", "var:client",
}


def test_every_sql_query_has_a_check() -> None:
    assert set(sql_queries(load_dashboard())) == EXPECTED_SQL_PANELS


def only(queries: dict[str, list[str]], title: str) -> str:
    [sql] = queries[title]
    return sql


def tokens_row(row: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(int(row[c]) for c in COLUMNS)


async def test_usage_leaderboard_has_the_exact_sums(filled: Filled) -> None:
    queries = sql_queries(load_dashboard())
    sql = only(queries, "Token usage per user")
    rows = await filled.run(sql, filled.window())
    board = {r["username"]: tokens_row(r) for r in rows}
    want = expected_leaderboard()
    assert board == want
    assert "ivy" not in board and "admin" not in board
    heaviest = sorted(want, key=lambda u: -sum(want[u]))
    assert [r["username"] for r in rows] == heaviest

    # The same numbers as the REST export (two readers of one database must agree).
    from_export: dict[str, list[int]] = {}
    for rec in filled.export:
        sums = from_export.setdefault(rec["initiator"]["username"], [0, 0, 0, 0])
        for n, key in enumerate(TOKEN_KEYS):
            sums[n] += sum(u[key] for u in rec["token_usages"])
    assert {u: tuple(s) for u, s in from_export.items()} == want

    # Template variables narrow it down.
    rows = await filled.run(sql, filled.window(username=["gina"]))
    assert {r["username"]: tokens_row(r) for r in rows} == {"gina": want["gina"]}
    rows = await filled.run(sql, filled.window(client=["Claude Code"]))
    assert {r["username"]: tokens_row(r) for r in rows} == expected_leaderboard(
        tuple(c for c in TRAFFIC if c.client == "Claude Code"))
    rows = await filled.run(sql, filled.window(provider=["openai"], model=["gpt-4.1"]))
    assert {r["username"]: tokens_row(r) for r in rows} == expected_leaderboard(
        tuple(c for c in TRAFFIC if c.model == "gpt-4.1"))
    rows = await filled.run(sql, filled.window(username=["gina", "hugo"], provider=["anthropic"]))
    assert {r["username"]: tokens_row(r) for r in rows} == expected_leaderboard(
        tuple(c for c in TRAFFIC if PROVIDER[c.api] == "anthropic"))

    # The time filter applies: a window before the traffic is empty.
    before = Query(filled.started - dt.timedelta(days=3), filled.started - dt.timedelta(days=2))
    assert await filled.run(sql, before) == []


async def test_total_tokens(filled: Filled) -> None:
    sql = only(sql_queries(load_dashboard()), "Total tokens")
    [row] = await filled.run(sql, filled.window())
    want = [sum(v[n] for v in expected_leaderboard().values()) for n in range(4)]
    assert list(tokens_row(row)) == want
    [row] = await filled.run(sql, filled.window(username=["hugo"]))
    assert tokens_row(row) == expected_leaderboard()["hugo"]
    before = Query(filled.started - dt.timedelta(days=3), filled.started - dt.timedelta(days=2))
    [row] = await filled.run(sql, before)
    assert tokens_row(row) == (0, 0, 0, 0)


async def test_top_models_and_clients(filled: Filled) -> None:
    queries = sql_queries(load_dashboard())
    rows = await filled.run(only(queries, "Top models"), filled.window())
    assert {r["model"]: r["interceptions"] for r in rows} == Counter(c.model for c in TRAFFIC)
    assert rows[0]["model"] == "gpt-4.1"             # the most used model first
    rows = await filled.run(only(queries, "Top clients"), filled.window())
    assert {r["client"]: r["interceptions"] for r in rows} == Counter(c.client for c in TRAFFIC)
    assert [r["interceptions"] for r in rows] == sorted((r["interceptions"] for r in rows), reverse=True)
    rows = await filled.run(only(queries, "Top clients"), filled.window(username=["hugo"]))
    assert {r["client"]: r["interceptions"] for r in rows} == Counter(c.client for c in TRAFFIC if c.user == "hugo")


async def test_interceptions_and_tokens_over_time(filled: Filled) -> None:
    queries = sql_queries(load_dashboard())
    rows = await filled.run(only(queries, "Interceptions over time per user"), filled.window())
    per_user: Counter[str] = Counter()
    for r in rows:
        assert isinstance(r["time"], dt.datetime)
        assert r["time"].minute == 0 and r["time"].second == 0          # hour buckets
        assert filled.started - dt.timedelta(hours=1) <= r["time"] <= dt.datetime.now(dt.UTC)
        per_user[r["metric"]] += r["interceptions"]
    assert per_user == Counter(c.user for c in TRAFFIC)
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)

    rows = await filled.run(only(queries, "Tokens over time"), filled.window())
    sums = [sum(int(r[c]) for r in rows) for c in COLUMNS]
    assert sums == [sum(v[n] for v in expected_leaderboard().values()) for n in range(4)]


async def test_prompts_table(filled: Filled) -> None:
    sql = only(sql_queries(load_dashboard()), "Prompts")
    rows = await filled.run(sql, filled.window())
    assert sorted((r["username"], r["prompt"], r["model"], r["client"]) for r in rows) == sorted(
        (c.user, c.prompt, c.model, c.client) for c in TRAFFIC)
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
    ids = {r["id"] for r in filled.export}
    assert all(str(r["interception_id"]) in ids for r in rows)
    rows = await filled.run(sql, filled.window(username=["hugo"], client=["Unknown"]))
    assert [r["prompt"] for r in rows] == ["hugo says hi"]


async def test_tool_calls_table_and_errors(filled: Filled) -> None:
    queries = sql_queries(load_dashboard())
    rows = await filled.run(only(queries, "Tool calls (errors in red)"), filled.window())
    recorded = Counter((t["tool"], t["input"], r["initiator"]["username"], r["client"])
                       for r in filled.export for t in r["tool_usages"])
    assert sum(recorded.values()) == 2               # Codex's function call and Claude Code's tool_use
    assert {c for _, _, _, c in recorded} == {"Codex", "Claude Code"}
    recorded[("coder_list_workspaces", "{}", "hugo", "Claude Code")] += 1
    assert Counter((r["tool"], r["input"], r["username"], r["client"]) for r in rows) == recorded
    errors = [r for r in rows if r["invocation_error"] is not None]
    assert [(e["tool"], e["injected"], e["server_url"], e["invocation_error"], e["username"]) for e in errors] == [
        ("coder_list_workspaces", True, "http://mcp.example.test/mcp", INJECTED_ERROR, "hugo")]
    assert all(r["injected"] is False and r["server_url"] is None for r in rows if r["invocation_error"] is None)
    assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)

    [stat] = await filled.run(only(queries, "Tool calls"), filled.window())
    assert (stat["calls"], stat["errors"]) == (len(rows), 1)
    [stat] = await filled.run(only(queries, "Tool calls"), filled.window(username=["gina"]))
    assert stat["errors"] == 0 and stat["calls"] == sum(len(r["tool_usages"]) for r in filled.export
                                                         if r["initiator"]["username"] == "gina")


async def test_template_variable_queries(filled: Filled) -> None:
    queries = sql_queries(load_dashboard())
    window = filled.window()
    users = [r["username"] for r in await filled.run(only(queries, "var:username"), window)]
    assert {"admin", "gina", "hugo", "ivy"} <= set(users) and users == sorted(users)
    providers = [r["provider"] for r in await filled.run(only(queries, "var:provider"), window)]
    assert providers == ["anthropic", "openai"]
    models = [r["model"] for r in await filled.run(only(queries, "var:model"), window)]
    assert models == sorted({c.model for c in TRAFFIC})
    anthropic_only = filled.window(provider=["anthropic"])
    models = [r["model"] for r in await filled.run(only(queries, "var:model"), anthropic_only)]
    assert models == sorted({c.model for c in TRAFFIC if PROVIDER[c.api] == "anthropic"})
    clients = [r["client"] for r in await filled.run(only(queries, "var:client"), window)]
    assert clients == sorted({c.client for c in TRAFFIC})


# ------------------------------------------------------------------ Prometheus panels

def exported_metric_names(text: str) -> set[str]:
    """Series names on /metrics, plus those a declared family has even before its first sample."""
    names: set[str] = set()
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count"),
                "counter": ("",), "gauge": ("",)}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names.update(name + s for s in suffixes.get(kind, ("",)))
            if kind == "counter" and not name.endswith("_total"):
                names.add(name + "_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def test_prometheus_panels_use_the_design_metric_names() -> None:
    exprs = " ".join(e for es in prom_exprs(load_dashboard()).values() for e in es)
    for name in ("coder_aibridged_interceptions_inflight", "coder_aibridged_interceptions_duration_seconds_bucket",
                 "coder_aibridged_upstream_overhead_seconds_bucket", "coder_aibridged_interceptions_total"):
        assert name in exprs
    assert 'coder_aibridged_interceptions_total{status!="success"' in exprs


async def test_every_prometheus_metric_is_exported(filled: Filled) -> None:
    exported = exported_metric_names(filled.metrics_text)
    used: dict[str, set[str]] = {}
    for title, exprs in prom_exprs(load_dashboard()).items():
        for expr in exprs:
            for name in re.findall(r"\b(coder_aibridged_[a-z_]+)\b", expr):
                used.setdefault(name, set()).add(title)
            assert "$__rate_interval" in expr or "[" not in expr, expr
    assert used
    missing = {name: sorted(titles) for name, titles in used.items() if name not in exported}
    assert not missing, f"metrics used by panels but not exported on /metrics: {missing}"
    # After the traffic the core series have samples, not only declarations.
    samples = {re.split(r"[{\s]", line, maxsplit=1)[0] for line in filled.metrics_text.splitlines()
               if line and not line.startswith("#")}
    for name in ("coder_aibridged_interceptions_total", "coder_aibridged_interceptions_duration_seconds_bucket",
                 "coder_aibridged_upstream_overhead_seconds_bucket", "coder_aibridged_tokens_total"):
        assert name in samples, name
