"""CPU of each piece of the bridge's request path, measured in-process (no sockets, no noise
from the other processes): what ``bench.run`` cannot split on a busy 2-core machine.

    python -m bench.micro [--seconds 0.5]

Each line is the CPU time (``time.process_time``: every thread of this process, so the aiosqlite
worker thread counts) of one call, the median of 5 runs. The pieces use the same inputs the
benchmark sends: the aiohttp client's request headers, the chat request body, the fake upstream's
``bench`` answers (1235-byte JSON, 50-event stream in 5 writes).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from tests.fakes.upstream import get_scenario

from aibridge.bridge.apis.base import Api
from aibridge.bridge.apis.chat_completions import CHAT_COMPLETIONS
from aibridge.bridge.apis.messages import MESSAGES
from aibridge.bridge.apis.responses import RESPONSES
from aibridge.bridge.bodies import body_problem
from aibridge.bridge.clients import detect_client
from aibridge.bridge.credentials import CENTRALIZED
from aibridge.bridge.flow import Addons, Flow
from aibridge.bridge.providers.http import forwardable_headers, relayable_headers
from aibridge.bridge.sse import SSEDecoder
from aibridge.identity.auth import Authenticator
from aibridge.recording.addon import RecordingAddon
from aibridge.recording.recorder import Recorder
from aibridge.redaction.addon import RedactionAddon, redact_tree
from aibridge.redaction.secrets import Redactor
from aibridge.store import users as user_store
from aibridge.store.changes import Generations
from aibridge.store.db import create_engine, migrate
from aibridge.store.records import InterceptionEnd, InterceptionStart, PromptRecord, Record, TokenUsageRecord, new_id
from aibridge.store.writer import SQLiteWriter, write_batch
from bench.run import WORKLOADS

SCENARIO_API = {"chat_completions": "chat", "messages": "messages", "responses": "responses"}

REQUEST_HEADERS = CIMultiDictProxy(CIMultiDict({
    "Host": "127.0.0.1:3000", "Content-Type": "application/json", "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate", "User-Agent": "Python/3.11 aiohttp/3.14.5", "Content-Length": "180",
}))
UPSTREAM_HEADERS = CIMultiDictProxy(CIMultiDict({
    "Content-Type": "text/event-stream; charset=utf-8", "x-request-id": "req_fake000000000000000000000001",
    "openai-organization": "org-fake-upstream", "openai-processing-ms": "7", "openai-version": "2020-10-01",
    "Transfer-Encoding": "chunked", "Date": "Thu, 26 Nov 2026 17:00:00 GMT", "Server": "Python/3.11 aiohttp/3.14.5",
}))


def per_call(fn: Callable[[], object], seconds: float) -> float:
    """CPU µs per call: median of 5 runs of about ``seconds`` each."""
    n, start = 1, time.process_time()
    while time.process_time() - start < seconds / 10:
        fn()
        n += 1
    results = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        results.append((time.process_time() - t0) / n * 1e6)
    return statistics.median(results)


async def per_call_async(fn: Callable[[], Awaitable[object]], n: int, runs: int = 5) -> tuple[float, float]:
    """(CPU µs, wall µs) per awaited call, medians of ``runs`` runs of ``n`` calls."""
    cpus, walls = [], []
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            await fn()
        cpus.append((time.process_time() - c0) / n * 1e6)
        walls.append((time.perf_counter() - w0) / n * 1e6)
    return statistics.median(cpus), statistics.median(walls)


def interception_records(actor_id: uuid.UUID) -> list[Record]:
    """What one successful chat interception submits (start, prompt, usage, end)."""
    iid = new_id()      # as the flow makes them (time-ordered)
    return [InterceptionStart(iid, actor_id, "openai", "openai", "chat_completions", "gpt-4.1-scenario-bench",
                              "Unknown", None, "Python/3.11 aiohttp/3.14.5", {"streaming": True, "route": "/v1/x"}),
            PromptRecord(iid, "", "Write one short paragraph for the benchmark; nothing else.", {}),
            TokenUsageRecord(iid, "chatcmpl-x", 21, 180, 0, 0, {"completion_reasoning": 0}),
            InterceptionEnd(iid)]


async def main_async(seconds: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="aibridge-micro-"))
    url = f"sqlite+aiosqlite:///{tmp / 'aibridge.db'}"
    engine = create_engine(url)
    await migrate(engine)
    user = await user_store.create_user(engine, "bench", "member")
    _, token = await user_store.create_api_key(engine, user.id, dt.timedelta(days=1))
    auth_headers = CIMultiDictProxy(CIMultiDict({**REQUEST_HEADERS, "Authorization": f"Bearer {token}"}))
    authenticator = Authenticator(engine, Generations())
    authenticator.last_used.start()        # as the server does: each use noted (written once a minute)
    actor = await authenticator.authenticate(auth_headers)

    results: list[tuple[str, str, float]] = []

    def add(group: str, label: str, us: float) -> None:
        results.append((group, label, us))
        print(f"  {us:8.1f} µs  {label}")

    print("request path, per request (CPU µs):")
    cpu, _ = await per_call_async(lambda: authenticator.authenticate(auth_headers), 20000)
    add("request", "auth: authenticate() with the token cached", cpu)
    add("request", "client detection: detect_client(headers)", per_call(lambda: detect_client(auth_headers), seconds))
    body = WORKLOADS["chat stream"].body

    def parse() -> None:
        parsed = orjson.loads(body)
        body_problem(body, parsed)
        CHAT_COMPLETIONS.request_info(parsed)
        CHAT_COMPLETIONS.prepare_upstream(parsed)
    add("request", "request body: orjson.loads + body_problem + request_info + prepare_upstream",
        per_call(parse, seconds))
    add("request", "headers: forwardable_headers + relayable_headers",
        per_call(lambda: (forwardable_headers(auth_headers), relayable_headers(UPSTREAM_HEADERS)), seconds))

    recorder = Recorder(engine, tmp / "journal.jsonl")
    addons = Addons([RecordingAddon(recorder)])
    info = CHAT_COMPLETIONS.request_info(orjson.loads(body))

    class _Provider:
        type = name = "openai"

    provider: Any = _Provider()

    def flow_and_records() -> None:
        flow = Flow(id=uuid.uuid4(), actor=actor, provider=provider, api=CHAT_COMPLETIONS, route="/v1/chat/completions",
                    method="POST", info=info, model=info.model, client="Unknown", session_id=None,
                    user_agent="Python/3.11 aiohttp/3.14.5")
        addons.request_parsed(flow)
        for finding in CHAT_COMPLETIONS.blocking_findings(blocking_answer):
            addons.finding(flow, finding)
        addons.interception_ended(flow)
        recorder._pending.clear()
    chat = get_scenario("chat", "bench")
    blocking_answer = orjson.loads(chat.replies["blocking"].body)
    add("request", "flow + recording addon: Flow, 4 records built and submitted",
        per_call(flow_and_records, seconds))

    raw_answer = chat.replies["blocking"].body
    add("request", "blocking answer: orjson.loads + blocking_findings (1235 B)",
        per_call(lambda: CHAT_COMPLETIONS.blocking_findings(orjson.loads(raw_answer)), seconds))
    for api in (CHAT_COMPLETIONS, MESSAGES, RESPONSES):
        chunks = [c for c, _ in get_scenario(SCENARIO_API[api.name], "bench").replies["streaming"].chunks]

        def observe_stream(api: Api = api, chunks: list[bytes] = chunks) -> None:
            decoder = SSEDecoder()
            observer = api.new_stream_observer()
            for chunk in chunks:        # as intercept._relay_stream does
                for event in decoder.events(chunk, observer.skips, observer.skips_all):
                    observer.feed(event)
            for event in decoder.flush():
                observer.feed(event)
            observer.finish()
        add("request", f"stream: SSE decode + {api.name} observer, 50 events ({len(chunks)} chunks), per stream",
            per_call(observe_stream, seconds))
    decoder_only = per_call(lambda: [SSEDecoder().feed(c) for c in chunks], seconds)
    add("request", "  SSEDecoder.feed alone (every event decoded; the last API's stream)", decoder_only)

    await flow_pieces(add, actor, body, raw_answer)
    redaction_pieces(add, seconds, body, blocking_answer)

    print("\nrecording writer, per interception (CPU µs incl. the aiosqlite thread; wall µs):")
    sqlite_writer = SQLiteWriter(engine.url.database or "")
    for k in (1, 5, 64):
        async def real(k: int = k) -> None:
            await write_batch(engine, [r for _ in range(k) for r in interception_records(user.id)])
        cpu, wall = await per_call_async(real, max(4, 400 // k))
        add("writer", f"write_batch on aiosqlite, {k:>2} interception(s) per batch (start, prompt, usage, end)",
            cpu / k)
        print(f"{'':13}wall {wall / k:8.1f} µs")
        sync_cpu = per_call(lambda k=k: sqlite_writer.write([  # type: ignore[misc]
            r for _ in range(k) for r in interception_records(user.id)]), seconds) / k
        add("writer", f"  the recorder's path: SQLiteWriter in its thread, {k:>2} per batch", sync_cpu)
    sqlite_writer.close()

    print("\nauth cache miss (every 10 s per token; all in-flight requests of the token miss together):")
    cpu, wall = await per_call_async(lambda: user_store.get_api_key(engine, actor.token_id), 300)
    add("auth", "get_api_key() (one SELECT through SQLAlchemy + aiosqlite)", cpu)
    print(f"{'':13}wall {wall:8.1f} µs")
    for inflight in (1, 64):
        herd = []
        for _ in range(5):
            authenticator._cache.clear()
            c0, w0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(authenticator.authenticate(auth_headers) for _ in range(inflight)))
            herd.append(((time.process_time() - c0) * 1e6, (time.perf_counter() - w0) * 1e6))
        cpu, wall = statistics.median(h[0] for h in herd), statistics.median(h[1] for h in herd)
        add("auth", f"one cache expiry with {inflight:>2} request(s) of the token in flight (whole herd)", cpu)
        print(f"{'':13}wall {wall:8.1f} µs")
    await engine.dispose()


class _Upstream:
    """A canned upstream answer (the fake's ``bench`` reply), as the HTTP provider hands it over."""

    def __init__(self, body: bytes, chunks: list[bytes]) -> None:
        self.status, self.body, self.chunks = 200, body, chunks
        self.headers = UPSTREAM_HEADERS if chunks else CIMultiDictProxy(CIMultiDict({
            "Content-Type": "application/json"}))

    async def iter_chunks(self) -> Any:
        for chunk in self.chunks:
            yield chunk

    async def read(self) -> bytes:
        return self.body

    def close(self) -> None:
        pass


class _Provider:
    type = name = "openai"

    def __init__(self) -> None:
        self.answer = _Upstream(b"", [])

    def upstream_model(self, model: str) -> str:
        return model

    async def send(self, request: Any) -> _Upstream:
        return self.answer


async def flow_pieces(add: Callable[[str, str, float], None], actor: Any, body: bytes, answer: bytes) -> None:
    """``intercept()`` itself (no addons): parse, the turn loop's one turn, the relay, the end,
    on a copy of one mocked aiohttp request with a writer that drops the bytes: the flow's cost."""
    from aiohttp.test_utils import make_mocked_request

    from aibridge.bridge.intercept import intercept
    provider: Any = _Provider()
    addons = Addons([])
    base = make_mocked_request("POST", "/api/v2/aibridge/openai/v1/chat/completions", headers=REQUEST_HEADERS,
                               writer=_Writer())
    streamed = [c for c, _ in get_scenario("chat", "bench").replies["streaming"].chunks]
    for label, reply, request_body in (
            ("blocking (1235 B)", _Upstream(answer, []), body),
            (f"stream (50 events, {len(streamed)} chunks)", _Upstream(b"", streamed),
             orjson.dumps({**orjson.loads(body), "stream": True}))):
        provider.answer = reply

        async def one(request_body: bytes = request_body) -> None:
            request = base.clone()
            request._read_bytes = request_body      # as aiohttp keeps a body it has read
            await intercept(request, actor, provider, CHAT_COMPLETIONS, "v1/chat/completions", addons)
        cpu, _ = await per_call_async(one, 3000)
        add("request", f"the flow: intercept() with no addons, {label}", cpu)


class _Writer:
    """aiohttp's payload writer, minus the socket."""

    buffer_size = output_size = 0
    length: int | None = None

    def enable_chunking(self) -> None:
        pass

    def enable_compression(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def write_headers(self, status_line: str, headers: Any) -> None:
        pass

    def send_headers(self) -> None:
        pass

    async def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    async def write_eof(self, data: bytes = b"") -> None:
        pass


def redaction_pieces(add: Callable[[str, str, float], None], seconds: float, body: bytes,
                     answer: dict[str, Any]) -> None:
    """--aibridge-redact: the default (store) pays for the prompt and each finding's text;
    upstream also walks every string of the request body (a long agent context here)."""
    redactor = Redactor()
    info = CHAT_COMPLETIONS.request_info(orjson.loads(body))
    findings = CHAT_COMPLETIONS.blocking_findings(answer)
    store = RedactionAddon("store", redactor)
    flow: Any = type("F", (), {"info": info, "credential": CENTRALIZED})()

    def store_mode() -> None:
        store.request_parsed(flow)
        for finding in findings:
            store.finding(flow, finding)
    add("request", "redaction (store): the prompt and the answer's findings, no secret", per_call(store_mode, seconds))
    with_secret = f"{info.prompt} my key is AKIAZ7QX4MNB2VKL3PDR"
    add("request", "  a 2 KB prompt with one secret", per_call(lambda: redactor.redact(with_secret * 30), seconds))
    context = {"messages": [{"role": "user" if i % 2 else "assistant",
                             "content": f"turn {i}: def handler(request):\n    return json_response(data)\n" * 40}
                            for i in range(40)]}
    size = len(orjson.dumps(context))
    add("request", f"redaction (upstream): every string of a {size // 1024} KB body",
        per_call(lambda: redact_tree(orjson.loads(orjson.dumps(context)), redactor), seconds))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measured piece (default 0.5)")
    args = parser.parse_args()
    asyncio.run(main_async(args.seconds))


if __name__ == "__main__":
    main()
