"""A fake OpenAI + Anthropic upstream that replays wire-faithful scenarios.

Used by end-to-end tests (in-process) and benchmarks (its own process). The gateway is pointed at it with
``http://127.0.0.1:PORT/v1/`` (OpenAI) and ``http://127.0.0.1:PORT/`` (Anthropic).

In a test::

    fake = FakeUpstream()                      # keys: sk-openai-central / sk-ant-central
    await fake.start()                         # free port on 127.0.0.1
    ...                                        # model "gpt-4.1-scenario-tool" picks scenario "tool"
    fake.requests[-1].json, fake.requests[-1].include_usage
    expected_usage("chat", "tool")             # normalized usage, read from the same data files
    await fake.stop()

As a process: ``python -m tests.fakes.upstream --port 0`` prints ``READY <port>`` once listening
(recording is off unless ``--record``; ``GET /__fake/requests`` and ``GET /__fake/stats`` expose the log).

Scenario data lives in ``tests/data/upstream/<api>/<scenario>.txtar`` (api: chat, responses, messages); see
the README there for the format. Everything is parsed and encoded once, at start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import itertools
import re
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from aiohttp import web
from multidict import CIMultiDict

DATA_DIR: Final = Path(__file__).resolve().parent.parent / "data" / "upstream"
APIS: Final = ("chat", "responses", "messages")
DEFAULT_OPENAI_KEY: Final = "sk-openai-central"
DEFAULT_ANTHROPIC_KEY: Final = "sk-ant-central"
DEFAULT_SCENARIO: Final = "simple"
SSE_CONTENT_TYPE: Final = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE: Final = "application/json"
SCENARIO_HEADER: Final = "x-fake-scenario"
RESPONSE_ID_HEADER: Final = "x-fake-response-id"
COMPRESS_HEADER: Final = "x-fake-compress"

Provider = Literal["openai", "anthropic"]
PROVIDER_OF_API: Final[Mapping[str, Provider]] = {
    "chat": "openai",
    "responses": "openai",
    "messages": "anthropic",
}

_SCENARIO_IN_MODEL = re.compile(r"scenario-([a-z0-9_]+)")
_TXTAR_MARKER = re.compile(r"^-- (.+?) --$")
_SAFE_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_TOOL_NAME = b"__TOOL_NAME__"
_SAMPLES: Final[Mapping[str, Any]] = {
    "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}, "null": None,
}
_TOOL_INPUT_STR = b'"__TOOL_INPUT_STR__"'
_TOOL_INPUT_OBJ = b'"__TOOL_INPUT_OBJ__"'
_TOOL_RESULT = b"__TOOL_RESULT__"          # inside a JSON string: the text of the request's last tool result
_API_KEY = b"__API_KEY__"                  # in an HTTP reply: the key the request presented (a gateway echoing it)


# ---------------------------------------------------------------------------------------------------------
# Scenario data
# ---------------------------------------------------------------------------------------------------------


def parse_txtar(text: str) -> tuple[str, dict[str, str]]:
    """Split txtar text into its leading comment and ``{section name: content}``."""
    comment: list[str] = []
    sections: dict[str, str] = {}
    name: str | None = None
    buf: list[str] = []
    for line in text.split("\n"):
        m = _TXTAR_MARKER.match(line)
        if m is None:
            buf.append(line)
            continue
        if name is None:
            comment = buf
        else:
            sections[name] = "\n".join(buf)
        name, buf = m.group(1), []
    if name is None:
        comment = buf
    else:
        sections[name] = "\n".join(buf)
    return "\n".join(comment).strip(), sections


@dataclass(frozen=True, slots=True)
class Reply:
    """One pre-encoded upstream reply: an SSE stream, a JSON body, or a raw HTTP (error) response."""

    kind: Literal["sse", "json", "http"]
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()  # only for "http" replies (from the data file)
    body: bytes = b""
    body_gzip: bytes = b""
    chunks: tuple[tuple[bytes, int], ...] = ()  # (bytes to write, number of SSE events in it)
    chunks_no_usage: tuple[tuple[bytes, int], ...] = ()  # chat without stream_options.include_usage
    templated: bool = False

    @property
    def events(self) -> int:
        return sum(n for _, n in self.chunks)


@dataclass(frozen=True, slots=True)
class Scenario:
    api: str
    name: str
    comment: str
    replies: Mapping[str, Reply]  # "streaming", "blocking", "streaming/tool-call", "blocking/tool-call"
    usages: Mapping[str, Mapping[str, int]]  # "usage", "usage/streaming", "usage/tool-call"
    interval: float = 0.0  # seconds between stream writes
    events_per_write: int = 1
    end: str = ""  # "disconnect": drop the connection after the stream (and instead of a blocking reply)
    blocking_delay: float = 0.0
    compress: str = ""  # "gzip": compress blocking bodies when the request accepts gzip

    @property
    def has_followup(self) -> bool:
        return "streaming/tool-call" in self.replies or "blocking/tool-call" in self.replies


def _split_sse(text: str) -> list[str]:
    return [block.strip("\n") for block in re.split(r"\n[ \t]*\n", text.strip("\n")) if block.strip()]


def _check_sse_block(block: str, where: str) -> None:
    for line in block.split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            try:
                orjson.loads(line[6:])
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{where}: bad JSON in SSE data line: {line[:80]}") from exc
        elif not line.startswith(("event: ", "data: ", "id: ", "retry: ", ":")):
            raise ValueError(f"{where}: not an SSE line: {line[:80]}")


def _strip_chat_usage(block: str) -> str | None:
    """The chunk as sent without ``include_usage``: no usage chunk, no ``"usage": null`` keys."""
    if not block.startswith("data: {"):
        return block
    obj = orjson.loads(block[6:])
    if not isinstance(obj, dict) or "usage" not in obj:
        return block
    if obj.get("choices") == [] and obj.get("usage"):
        return None
    del obj["usage"]
    return "data: " + orjson.dumps(obj).decode()


def _group(blocks: Sequence[str], per_write: int) -> tuple[tuple[bytes, int], ...]:
    framed = [(b + "\n\n").encode() for b in blocks]
    return tuple(
        (b"".join(framed[i : i + per_write]), len(framed[i : i + per_write]))
        for i in range(0, len(framed), per_write)
    )


def _parse_reply(api: str, text: str, per_write: int, where: str) -> Reply:
    stripped = text.strip("\n")
    templated = _TOOL_NAME.decode() in stripped or _TOOL_RESULT.decode() in stripped
    if stripped.startswith("HTTP/"):
        head, _, body_text = stripped.partition("\n\n")
        lines = head.split("\n")
        status = int(lines[0].split()[1])
        headers = tuple(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(":") for line in lines[1:])
            if k.strip().lower() != "content-length"
        )
        body = body_text.strip().encode()
        if any(k.lower() == "content-type" and "json" in v for k, v in headers):
            orjson.loads(body)
        return Reply("http", status, headers, body, gzip.compress(body, mtime=0), templated=templated)
    if stripped.startswith(("event:", "data:")):
        blocks = _split_sse(stripped)
        for block in blocks:
            _check_sse_block(block, where)
        chunks = _group(blocks, per_write)
        no_usage = chunks
        if api == "chat":
            no_usage = _group([b for b in map(_strip_chat_usage, blocks) if b is not None], per_write)
        return Reply("sse", chunks=chunks, chunks_no_usage=no_usage, templated=templated)
    body = stripped.strip().encode()
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{where}: blocking section is not JSON") from exc
    return Reply("json", body=body, body_gzip=gzip.compress(body, mtime=0), templated=templated)


def _load_scenario(api: str, path: Path, raw: Mapping[str, tuple[str, dict[str, str]]]) -> Scenario:
    comment, sections = raw[path.stem]
    config: dict[str, Any] = orjson.loads(sections["config"]) if "config" in sections else {}
    alias = config.get("alias")
    if alias:
        sections = {**raw[alias][1], **{k: v for k, v in sections.items() if k != "config"}}
    per_write = int(config.get("events_per_write", 1))
    replies: dict[str, Reply] = {}
    usages: dict[str, Mapping[str, int]] = {}
    for name, text in sections.items():
        where = f"{path}:{name}"
        if name.startswith(("streaming", "blocking")):
            replies[name] = _parse_reply(api, text, per_write, where)
        elif name.startswith("usage"):
            usages[name] = orjson.loads(text)
        elif name != "config":
            raise ValueError(f"{where}: unknown section")
    if "usage" not in usages:
        raise ValueError(f"{path}: no usage section")
    return Scenario(
        api=api,
        name=path.stem,
        comment=comment,
        replies=replies,
        usages=usages,
        interval=float(config.get("interval_ms", 0)) / 1000,
        events_per_write=per_write,
        end=str(config.get("end", "")),
        blocking_delay=float(config.get("blocking_delay_ms", 0)) / 1000,
        compress=str(config.get("compress", "")),
    )


@cache
def load_scenarios(data_dir: Path = DATA_DIR) -> Mapping[tuple[str, str], Scenario]:
    """All scenarios, keyed by ``(api, name)``; parsed and encoded once per process."""
    out: dict[tuple[str, str], Scenario] = {}
    for api in APIS:
        paths = sorted((data_dir / api).glob("*.txtar"))
        raw = {p.stem: parse_txtar(p.read_text(encoding="utf-8")) for p in paths}
        for path in paths:
            out[(api, path.stem)] = _load_scenario(api, path, raw)
    return out


@cache
def load_models(data_dir: Path = DATA_DIR) -> Mapping[str, Any]:
    """``{"openai": list body, "anthropic": list body}`` for GET /v1/models."""
    _, sections = parse_txtar((data_dir / "models.txtar").read_text(encoding="utf-8"))
    return {name: orjson.loads(text) for name, text in sections.items()}


def scenario_names(api: str) -> list[str]:
    return sorted(name for a, name in load_scenarios() if a == api)


def get_scenario(api: str, name: str) -> Scenario:
    try:
        return load_scenarios()[(api, name)]
    except KeyError:
        raise KeyError(f"no scenario {name!r} for api {api!r}; known: {scenario_names(api)}") from None


def expected_usage(
    api: str, scenario: str, *, streaming: bool = False, followup: bool = False
) -> dict[str, int]:
    """The normalized usage one upstream call of ``scenario`` reports.

    Keys: ``input_tokens`` (excluding cached tokens), ``output_tokens``, ``cache_read_input_tokens``,
    ``cache_write_input_tokens``, plus provider extras (``reasoning_tokens``, ``ephemeral_5m_input_tokens``,
    ``ephemeral_1h_input_tokens``) where the scenario has them. ``{}`` means the call reports no usage.
    ``followup=True``: the call answering a tool result (scenarios with ``*/tool-call`` sections).
    ``streaming=True``: what a stream reports, when it differs (error scenarios that end early).
    """
    sc = get_scenario(api, scenario)
    if followup:
        key = "usage/tool-call"
    elif streaming and "usage/streaming" in sc.usages:
        key = "usage/streaming"
    else:
        key = "usage"
    if key not in sc.usages:
        raise KeyError(f"scenario {api}/{scenario} has no {key} section")
    return dict(sc.usages[key])


# ---------------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ReceivedRequest:
    """One request as the fake received it, plus what the fake did with it."""

    method: str
    path: str
    query_string: str
    headers: CIMultiDict[str]
    body: bytes
    json: Any
    api: str | None = None  # chat | responses | messages | models | count_tokens | ...
    scenario: str | None = None
    stream: bool = False
    followup: bool = False  # answered with the scenario's */tool-call sections
    status: int = 0
    events_sent: int = 0
    cancelled: bool = False  # the client went away before the stream ended

    @property
    def header_pairs(self) -> list[tuple[str, str]]:
        return list(self.headers.items())

    @property
    def model(self) -> str | None:
        m = self.json.get("model") if isinstance(self.json, dict) else None
        return m if isinstance(m, str) else None

    @property
    def include_usage(self) -> bool:
        """Whether the request had ``stream_options.include_usage: true`` (chat completions)."""
        opts = self.json.get("stream_options") if isinstance(self.json, dict) else None
        return isinstance(opts, dict) and opts.get("include_usage") is True

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query_string": self.query_string,
            "headers": self.header_pairs,
            "json": self.json,
            "body": None if self.json is not None else self.body.decode("utf-8", "replace"),
            "api": self.api,
            "scenario": self.scenario,
            "stream": self.stream,
            "followup": self.followup,
            "include_usage": self.include_usage,
            "status": self.status,
            "events_sent": self.events_sent,
            "cancelled": self.cancelled,
        }


def _tool_candidates(api: str, data: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    tools = data.get("tools")
    if not isinstance(tools, list):
        return
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if api == "chat":
            fn = tool.get("function")
            name, schema = (fn.get("name"), fn.get("parameters")) if isinstance(fn, dict) else (None, None)
        elif api == "responses":
            name, schema = tool.get("name"), tool.get("parameters")
        else:
            name, schema = tool.get("name"), tool.get("input_schema")
        if isinstance(name, str) and _SAFE_TOOL_NAME.match(name):
            yield name, schema


def _sample_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "fake"
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "string")
    return _SAMPLES.get(typ, "fake") if isinstance(typ, str) else "fake"


def _sample_input(schema: Any) -> dict[str, Any]:
    """Arguments holding the schema's required properties, with plain sample values."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties")
    required = schema.get("required")
    if not isinstance(props, dict):
        props = {}
    if not isinstance(required, list):
        return {}
    return {name: _sample_value(props.get(name)) for name in required if isinstance(name, str)}


def _last_tool_result(api: str, data: Mapping[str, Any]) -> str:
    """The text of the request's latest tool result ("" when there is none)."""
    if api == "responses":
        items = data.get("input")
        last = items[-1] if isinstance(items, list) and items else None
        return str(last.get("output", "")) if isinstance(last, dict) else ""
    messages = data.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if not isinstance(last, dict):
        return ""
    if api == "chat":
        return str(last.get("content") or "")
    content = last.get("content")
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            if isinstance(inner, list):
                return "".join(str(p.get("text", "")) for p in inner if isinstance(p, dict))
            return str(inner or "")
    return ""


@dataclass(frozen=True, slots=True)
class _ToolFill:
    name: bytes
    input_str: bytes
    input_obj: bytes
    result: bytes = b""         # JSON-escaped, for use inside a JSON string

    @classmethod
    def for_request(cls, api: str, data: Mapping[str, Any], wanted: str = "") -> _ToolFill:
        """``wanted`` (header ``x-fake-tool``): call the tool whose name ends with it instead."""
        candidates = list(_tool_candidates(api, data))
        first = next(
            (c for c in candidates if c[0].startswith("bmcp_")),
            candidates[0] if candidates else ("bmcp_missing_tool", None),
        )
        name, schema = next((c for c in candidates if wanted and c[0].endswith(wanted)), first)
        obj = orjson.dumps(_sample_input(schema))
        return cls(name.encode(), orjson.dumps(obj.decode()), obj, orjson.dumps(_last_tool_result(api, data))[1:-1])

    def apply(self, data: bytes) -> bytes:
        return (
            data.replace(_TOOL_NAME, self.name)
            .replace(_TOOL_INPUT_STR, self.input_str)
            .replace(_TOOL_INPUT_OBJ, self.input_obj)
            .replace(_TOOL_RESULT, self.result)
        )


def _presented_key(request: web.Request) -> str:
    """The API key a request carried (x-api-key, else the bearer token), JSON-escaped."""
    key = request.headers.get("x-api-key") or request.headers.get("Authorization", "").removeprefix("Bearer ")
    return orjson.dumps(key).decode()[1:-1]
_RESPONSE_ID = re.compile(rb'"(resp_[A-Za-z0-9]+)"')


@dataclass(frozen=True, slots=True)
class _Renamed:
    """Header ``x-fake-response-id``: the answer's response id replaced by the one asked for (ids
    differ per call, as OpenAI's do), after any tool fill."""

    inner: _ToolFill | None
    old: bytes
    new: bytes

    def __init__(self, inner: _ToolFill | None, reply: Reply, wanted: str) -> None:
        found = _RESPONSE_ID.search(reply.body or b"".join(c for c, _ in reply.chunks))
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "old", found.group(1) if found else b"\0")
        object.__setattr__(self, "new", wanted.encode())

    def apply(self, data: bytes) -> bytes:
        return (self.inner.apply(data) if self.inner else data).replace(self.old, self.new)


def is_followup(api: str, data: Mapping[str, Any]) -> bool:
    """Whether the request's latest turn carries a tool result (the model should now answer in text)."""
    if api == "responses":
        items = data.get("input")
        if not isinstance(items, list) or not items or not isinstance(items[-1], dict):
            return False
        return items[-1].get("type") in ("function_call_output", "custom_tool_call_output")
    messages = data.get("messages")
    if not isinstance(messages, list):
        return False
    for msg in reversed(messages):
        if not isinstance(msg, dict) or msg.get("role") in ("system", "developer"):
            continue  # Claude Code puts role:"system" items among the messages
        if api == "chat":
            return msg.get("role") == "tool"
        content = msg.get("content")
        return (
            msg.get("role") == "user"
            and isinstance(content, list)
            and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
        )
    return False


# ---------------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------------


def _openai_error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    err = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return orjson.dumps(err, option=orjson.OPT_INDENT_2)


def _mask_key(key: str) -> str:
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


class FakeUpstream:
    """The fake upstream server and its request log."""

    def __init__(
        self,
        openai_key: str = DEFAULT_OPENAI_KEY,
        anthropic_key: str = DEFAULT_ANTHROPIC_KEY,
        *,
        record: bool = True,
        data_dir: Path = DATA_DIR,
    ) -> None:
        self.openai_key = openai_key
        self.anthropic_key = anthropic_key
        self.record = record
        self.scenarios = load_scenarios(data_dir)
        self.models = load_models(data_dir)
        self.requests: list[ReceivedRequest] = []
        self.request_count = 0
        self.cancelled = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._cancel_event = asyncio.Event()
        self.app = self._build_app()

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> None:
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeUpstream is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1/"

    @property
    def anthropic_base_url(self) -> str:
        return f"{self.url}/"

    def clear(self) -> None:
        self.requests.clear()
        self.request_count = 0
        self.cancelled = 0

    def requests_to(self, path: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path == path]

    async def wait_cancelled(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` streams have seen their client go away."""
        async with asyncio.timeout(timeout):
            while self.cancelled < count:
                self._cancel_event.clear()
                await self._cancel_event.wait()

    # -- routing --------------------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app[FAKE_UPSTREAM_KEY] = self
        r = app.router
        r.add_post("/v1/chat/completions", self._chat)
        r.add_post("/v1/responses", self._responses)
        # ChatGPT's backend as Codex logged in with ChatGPT calls it ({base}/responses, no /v1).
        r.add_post("/backend-api/codex/responses", self._responses)
        r.add_get("/v1/responses/{id}", self._get_response)
        r.add_delete("/v1/responses/{id}", self._stored_object)
        r.add_post("/v1/responses/input_tokens", self._input_tokens)
        r.add_post("/v1/responses/{id}/cancel", self._stored_object)
        r.add_get("/v1/responses/{id}/input_items", self._stored_object)
        r.add_post("/v1/conversations", self._create_conversation)
        r.add_route("*", "/v1/conversations/{id}", self._stored_object)
        r.add_route("*", "/v1/conversations/{id}/items", self._stored_object)
        r.add_post("/v1/messages", self._messages)
        r.add_post("/v1/messages/count_tokens", self._count_tokens)
        r.add_get("/v1/models", self._list_models)
        r.add_get("/v1/models/{id:.+}", self._get_model)
        r.add_post("/api/event_logging/batch", self._event_logging)
        r.add_get("/__fake/requests", self._ctl_requests)
        r.add_delete("/__fake/requests", self._ctl_clear)
        r.add_get("/__fake/stats", self._ctl_stats)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, "chat")

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, "responses")

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, "messages")

    # -- helpers --------------------------------------------------------------------------------------------

    async def _receive(self, request: web.Request, api: str) -> ReceivedRequest:
        body = await request.read()
        data: Any = None
        if body:
            with contextlib.suppress(orjson.JSONDecodeError):
                data = orjson.loads(body)
        rec = ReceivedRequest(
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            headers=CIMultiDict(request.headers),
            body=body,
            json=data,
            api=api,
        )
        self.request_count += 1
        if self.record:
            self.requests.append(rec)
        return rec

    def _headers(self, provider: Provider, content_type: str | None) -> CIMultiDict[str]:
        n = next(self._ids)
        h: CIMultiDict[str] = CIMultiDict()
        if content_type:
            h["Content-Type"] = content_type
        if provider == "openai":
            h["x-request-id"] = f"req_fake{n:024x}"
            h["openai-organization"] = "org-fake-upstream"
            h["openai-processing-ms"] = "7"
            h["openai-version"] = "2020-10-01"
        else:
            h["request-id"] = f"req_011Fake{n:017d}"
            h["anthropic-organization-id"] = "0f6b1a52-7d3c-4e8a-9b1f-fa4e00000000"
            if content_type == SSE_CONTENT_TYPE:
                h["Cache-Control"] = "no-cache"
        return h

    def _error(self, rec: ReceivedRequest, provider: Provider, status: int, type_: str, message: str,
               code: str | None = None, param: str | None = None) -> web.Response:
        headers = self._headers(provider, JSON_CONTENT_TYPE)
        if provider == "openai":
            body = _openai_error_body(message, type_, code, param)
        else:
            body = orjson.dumps({"type": "error", "error": {"type": type_, "message": message},
                                 "request_id": headers["request-id"]})
        rec.status = status
        return web.Response(status=status, body=body, headers=headers)

    def _auth_error(self, rec: ReceivedRequest, provider: Provider) -> web.Response | None:
        headers = rec.headers
        auth = headers.get("Authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if provider == "openai":
            if not auth and "api-key" in headers:     # Azure OpenAI's header
                if headers["api-key"] != self.openai_key:
                    return self._error(rec, "openai", 401, "invalid_request_error",
                                       "Access denied due to invalid subscription key or wrong API endpoint.",
                                       code="401")
                return None
            if not auth:
                return self._error(
                    rec, "openai", 401, "invalid_request_error",
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as "
                    "the password field (with blank username) if you're accessing the API from your "
                    "browser and are prompted for a username and password. You can obtain an API key "
                    "from https://platform.openai.com/account/api-keys.",
                )
            if bearer != self.openai_key:
                return self._error(
                    rec, "openai", 401, "invalid_request_error",
                    f"Incorrect API key provided: {_mask_key(bearer or auth)}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    code="invalid_api_key",
                )
            return None
        api_key = headers.get("x-api-key")
        if api_key is not None:
            if api_key != self.anthropic_key:
                return self._error(rec, "anthropic", 401, "authentication_error", "invalid x-api-key")
            return None
        if bearer is not None:  # the Python SDK (and ANTHROPIC_AUTH_TOKEN) send the key as a bearer token
            if bearer != self.anthropic_key:
                return self._error(rec, "anthropic", 401, "authentication_error", "Invalid bearer token")
            return None
        return self._error(rec, "anthropic", 401, "authentication_error", "x-api-key header is required")

    def _is_anthropic_request(self, request: web.Request) -> bool:
        h = request.headers
        if "x-api-key" in h or "anthropic-version" in h:
            return True
        auth = h.get("Authorization", "")
        return auth[:7].lower() == "bearer " and auth[7:].strip() == self.anthropic_key

    def _scenario_name(self, request: web.Request, data: Mapping[str, Any]) -> str:
        model = data.get("model")
        if isinstance(model, str):
            m = _SCENARIO_IN_MODEL.search(model)
            if m:
                return m.group(1)
        return request.headers.get(SCENARIO_HEADER) or DEFAULT_SCENARIO

    def _note_cancelled(self, rec: ReceivedRequest) -> None:
        if not rec.cancelled:
            rec.cancelled = True
            self.cancelled += 1
            self._cancel_event.set()

    @staticmethod
    def _client_gone(request: web.Request) -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            transport.close()
        return web.Response(status=502)  # never reaches the client

    # -- the three completion APIs --------------------------------------------------------------------------

    async def _complete(self, request: web.Request, api: str) -> web.StreamResponse:
        rec = await self._receive(request, api)
        provider = PROVIDER_OF_API[api]
        denied = self._auth_error(rec, provider)
        if denied is not None:
            return denied
        data = rec.json
        if not isinstance(data, dict):
            if provider == "openai":
                return self._error(rec, provider, 400, "invalid_request_error",
                                   "We could not parse the JSON body of your request.")
            return self._error(rec, provider, 400, "invalid_request_error",
                               "There was an error parsing the body.")
        name = self._scenario_name(request, data)
        rec.scenario = name
        rec.stream = data.get("stream") is True
        sc = self.scenarios.get((api, name))
        if sc is None:
            known = ", ".join(scenario_names(api))
            message = f"fake upstream: no scenario {name!r} for {api} (known: {known})"
            if provider == "openai":
                return self._error(rec, provider, 404, "invalid_request_error", message,
                                   code="model_not_found", param="model")
            return self._error(rec, provider, 404, "not_found_error", message)
        rec.followup = sc.has_followup and is_followup(api, data)
        key = ("streaming" if rec.stream else "blocking") + ("/tool-call" if rec.followup else "")
        reply = sc.replies.get(key)
        fill: _ToolFill | _Renamed | None = (
            _ToolFill.for_request(api, data, request.headers.get("x-fake-tool", ""))
            if reply is not None and reply.templated else None)
        if reply is not None and (wanted := request.headers.get(RESPONSE_ID_HEADER)):
            fill = _Renamed(fill if isinstance(fill, _ToolFill) else None, reply, wanted)
        if not rec.stream or reply is None or reply.kind != "sse":
            return await self._send_body(request, rec, sc, provider, reply, fill)
        return await self._send_stream(request, rec, sc, provider, reply, fill)

    async def _send_body(self, request: web.Request, rec: ReceivedRequest, sc: Scenario, provider: Provider,
                         reply: Reply | None, fill: _ToolFill | _Renamed | None) -> web.StreamResponse:
        if sc.blocking_delay:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + sc.blocking_delay
            while loop.time() < deadline:
                if self._client_gone(request):
                    self._note_cancelled(rec)
                    return web.Response(status=499)
                await asyncio.sleep(min(0.05, deadline - loop.time()))
        if reply is None:
            if sc.end == "disconnect":
                rec.status = 0
                return self._drop(request)
            return self._error(rec, provider, 400, "invalid_request_error",
                               f"fake upstream: scenario {sc.api}/{sc.name} has no "
                               f"{'streaming' if rec.stream else 'blocking'} reply")
        if reply.kind == "http":
            headers = self._headers(provider, None)
            headers.extend(reply.headers)
        else:
            headers = self._headers(provider, JSON_CONTENT_TYPE)
        body, body_gzip = reply.body, reply.body_gzip
        if fill is not None:
            body = fill.apply(body)
            body_gzip = b""
        if _API_KEY in body:
            body, body_gzip = body.replace(_API_KEY, _presented_key(request).encode()), b""
        forced = request.headers.get(COMPRESS_HEADER, "").lower() == "gzip"
        if forced or (sc.compress == "gzip" and "gzip" in request.headers.get("Accept-Encoding", "")):
            body = body_gzip or gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
        rec.status = reply.status
        return web.Response(status=reply.status, body=body, headers=headers)

    async def _send_stream(self, request: web.Request, rec: ReceivedRequest, sc: Scenario, provider: Provider,
                           reply: Reply, fill: _ToolFill | _Renamed | None) -> web.StreamResponse:
        chunks = reply.chunks if (sc.api != "chat" or rec.include_usage) else reply.chunks_no_usage
        resp = web.StreamResponse(status=200, headers=self._headers(provider, SSE_CONTENT_TYPE))
        rec.status = 200
        await resp.prepare(request)
        try:
            for i, (chunk, n) in enumerate(chunks):
                if sc.interval and i:
                    await asyncio.sleep(sc.interval)
                if self._client_gone(request):
                    raise ConnectionResetError
                await resp.write(fill.apply(chunk) if fill is not None else chunk)
                rec.events_sent += n
        except ConnectionError:
            self._note_cancelled(rec)
            return resp
        except asyncio.CancelledError:
            self._note_cancelled(rec)
            raise
        if sc.end == "disconnect":
            self._drop(request)
            return resp
        await resp.write_eof()
        return resp

    # -- the other routes -----------------------------------------------------------------------------------

    async def _get_response(self, request: web.Request) -> web.StreamResponse:
        rec = await self._receive(request, "responses")
        denied = self._auth_error(rec, "openai")
        if denied is not None:
            return denied
        rid = request.match_info["id"]
        if not rid.startswith("resp_"):
            return self._error(rec, "openai", 404, "invalid_request_error",
                               f"Response with id '{rid}' not found.", param="response_id")
        body = orjson.loads(self.scenarios[("responses", DEFAULT_SCENARIO)].replies["blocking"].body)
        body["id"] = rid
        rec.status = 200
        return web.Response(body=orjson.dumps(body, option=orjson.OPT_INDENT_2),
                            headers=self._headers("openai", JSON_CONTENT_TYPE))

    async def _stored_object(self, request: web.Request) -> web.StreamResponse:
        """The other routes of stored responses and conversations: the object named, as OpenAI shapes it."""
        rec = await self._receive(request, "stored")
        denied = self._auth_error(rec, "openai")
        if denied is not None:
            return denied
        oid = request.match_info["id"]
        kind = "conversation" if oid.startswith("conv_") else "response"
        body: dict[str, Any] = {"id": oid, "object": kind}
        if request.method == "DELETE":
            body["deleted"] = True
        elif request.path.endswith("/items") or request.path.endswith("/input_items"):
            body = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
        rec.status = 200
        return web.Response(body=orjson.dumps(body), headers=self._headers("openai", JSON_CONTENT_TYPE))

    async def _create_conversation(self, request: web.Request) -> web.StreamResponse:
        rec = await self._receive(request, "conversations")
        denied = self._auth_error(rec, "openai")
        if denied is not None:
            return denied
        rec.status = 200
        body = {"id": f"conv_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}", "object": "conversation",
                "created_at": int(time.time()), "metadata": {}}
        return web.Response(body=orjson.dumps(body), headers=self._headers("openai", JSON_CONTENT_TYPE))

    async def _input_tokens(self, request: web.Request) -> web.StreamResponse:
        rec = await self._receive(request, "input_tokens")
        denied = self._auth_error(rec, "openai")
        if denied is not None:
            return denied
        rec.status = 200
        return web.Response(body=orjson.dumps({"object": "response.input_tokens", "input_tokens": 11}),
                            headers=self._headers("openai", JSON_CONTENT_TYPE))

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        rec = await self._receive(request, "count_tokens")
        denied = self._auth_error(rec, "anthropic")
        if denied is not None:
            return denied
        data = rec.json if isinstance(rec.json, dict) else {}
        name = self._scenario_name(request, data)
        sc = self.scenarios.get(("messages", name)) or self.scenarios[("messages", DEFAULT_SCENARIO)]
        usage = sc.usages["usage"] or self.scenarios[("messages", DEFAULT_SCENARIO)].usages["usage"]
        total = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_write_input_tokens"]
        rec.scenario, rec.status = sc.name, 200
        return web.Response(body=orjson.dumps({"input_tokens": total}),
                            headers=self._headers("anthropic", JSON_CONTENT_TYPE))

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        provider: Provider = "anthropic" if self._is_anthropic_request(request) else "openai"
        rec = await self._receive(request, "models")
        denied = self._auth_error(rec, provider)
        if denied is not None:
            return denied
        rec.status = 200
        option = orjson.OPT_INDENT_2 if provider == "openai" else 0
        return web.Response(body=orjson.dumps(self.models[provider], option=option),
                            headers=self._headers(provider, JSON_CONTENT_TYPE))

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        provider: Provider = "anthropic" if self._is_anthropic_request(request) else "openai"
        rec = await self._receive(request, "models")
        denied = self._auth_error(rec, provider)
        if denied is not None:
            return denied
        model_id = request.match_info["id"]
        found = next((m for m in self.models[provider]["data"] if m["id"] == model_id), None)
        if found is None:
            if provider == "openai":
                return self._error(rec, provider, 404, "invalid_request_error",
                                   f"The model '{model_id}' does not exist", code="model_not_found",
                                   param="model")
            return self._error(rec, provider, 404, "not_found_error", f"model: {model_id}")
        rec.status = 200
        option = orjson.OPT_INDENT_2 if provider == "openai" else 0
        return web.Response(body=orjson.dumps(found, option=option),
                            headers=self._headers(provider, JSON_CONTENT_TYPE))

    async def _event_logging(self, request: web.Request) -> web.StreamResponse:
        rec = await self._receive(request, "event_logging")
        denied = self._auth_error(rec, "anthropic")
        if denied is not None:
            return denied
        rec.status = 200
        return web.Response(body=b"{}", headers=self._headers("anthropic", JSON_CONTENT_TYPE))

    # -- control (for a fake running in its own process; not recorded) -------------------------------------

    async def _ctl_requests(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=orjson.dumps([r.to_json() for r in self.requests]),
                            content_type=JSON_CONTENT_TYPE)

    async def _ctl_clear(self, request: web.Request) -> web.StreamResponse:
        self.clear()
        return web.Response(body=b"{}", content_type=JSON_CONTENT_TYPE)

    async def _ctl_stats(self, request: web.Request) -> web.StreamResponse:
        stats = {"requests": self.request_count, "cancelled": self.cancelled, "recorded": len(self.requests)}
        return web.Response(body=orjson.dumps(stats), content_type=JSON_CONTENT_TYPE)


FAKE_UPSTREAM_KEY: Final = web.AppKey("fake_upstream", FakeUpstream)


def build_app(
    openai_key: str = DEFAULT_OPENAI_KEY,
    anthropic_key: str = DEFAULT_ANTHROPIC_KEY,
    *,
    record: bool = True,
) -> web.Application:
    """A fresh fake as an aiohttp app; its :class:`FakeUpstream` is ``app[FAKE_UPSTREAM_KEY]``."""
    return FakeUpstream(openai_key, anthropic_key, record=record).app


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeUpstream(args.openai_key, args.anthropic_key, record=args.record)
    await fake.start(args.port, args.host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"READY {fake.port}\n")
    sys.stdout.flush()
    await stop.wait()
    await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.upstream",
                                     description="Fake OpenAI + Anthropic upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as READY <port>)")
    parser.add_argument("--openai-key", default=DEFAULT_OPENAI_KEY)
    parser.add_argument("--anthropic-key", default=DEFAULT_ANTHROPIC_KEY)
    parser.add_argument("--record", action="store_true",
                        help="keep every request in memory (GET /__fake/requests); off by default")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
