"""Many agents at once: a burst of concurrent long streams arriving within about a second.

    python -m bench.burst [--streams 2000] [--events 100] [--interval-ms 20] [--within 1.0]
                          [--workers auto] [--backlog N] [--bridge-env NAME=VALUE] [--keep] [--json PATH]

Starts, on 127.0.0.1: a paced upstream (this module with ``--serve-upstream``: every chat
completion is a stream of ``--events`` server-sent events, one every ``--interval-ms``, so all the
streams are open together), the bridge (``python -m aibridge server``: auth and recording on
SQLite, ``--workers``; ``--backlog`` sets ``CODER_AIBRIDGE_LISTEN_BACKLOG``, else its default),
and the bare aiohttp pass-through (``bench.passthrough``) as the reference. Each target gets the
same burst: ``--streams`` streams, each on its own connection, their starts spread evenly over
``--within`` seconds.

Reported per target: completion (streams answered 200 with every byte), failures by kind, p50/p99
of the stream's whole duration, the p99 the bridge adds over the bare proxy, the peak RSS of the
process tree when the most streams were open, above its idle RSS, divided by those streams, and the kernel's
listen-queue drops (``nstat``: TcpExtListenDrops, TcpExtListenOverflows; machine-wide counters, so
other load on the machine shows up too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from tests.fakes.upstream import get_scenario

from bench.run import Bridge, Proc, Stack, child_env, descendants, pct, rss_mb

NSTAT_COUNTERS = ("TcpExtListenDrops", "TcpExtListenOverflows")
BODY = orjson.dumps({"model": "gpt-4.1-burst", "stream": True, "stream_options": {"include_usage": True},
                     "messages": [{"role": "user", "content": "one of many agents"}]})


# ---------------------------------------------------------------- the paced upstream

def stream_events(count: int) -> list[bytes]:
    """``count`` chat-completion events: the bench scenario's, its content chunks repeated."""
    chunks = [c for c, _ in get_scenario("chat", "bench").replies["streaming"].chunks]
    events = [e + b"\n\n" for c in chunks for e in c.split(b"\n\n") if e.strip()]
    head, content, tail = events[:1], events[1:-3], events[-3:]
    body = [content[i % len(content)] for i in range(max(0, count - len(head) - len(tail)))]
    return head + body + tail


async def serve_upstream(events: int, interval: float) -> None:
    payload = stream_events(events)

    async def completions(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, event in enumerate(payload):
            if i:
                await asyncio.sleep(interval)
            await resp.write(event)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=65535)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {port}", flush=True)
    await asyncio.Event().wait()


# ---------------------------------------------------------------- the burst

@dataclass
class Result:
    target: str
    streams: int
    completed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    p50_s: float = 0.0
    p99_s: float = 0.0
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0
    open_at_peak: int = 0
    kb_per_open_stream: float = 0.0
    listen_drops: dict[str, int] = field(default_factory=dict)


def tree_rss(pid: int) -> float:
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            total += rss_mb(p)
        except OSError:
            continue
    return total


def nstat() -> dict[str, int]:
    out = subprocess.run(["nstat", "-asz", *NSTAT_COUNTERS], capture_output=True, text=True, check=False).stdout
    values = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()[1:] if line.strip()}
    return {name: values.get(name, 0) for name in NSTAT_COUNTERS}


async def burst(name: str, url: str, headers: dict[str, str], pid: int, args: argparse.Namespace,
                expected: int) -> Result:
    result = Result(name, args.streams, rss_idle_mb=tree_rss(pid))
    durations: list[float] = []
    failures: Counter[str] = Counter()
    open_now = 0
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one(delay: float) -> None:
            nonlocal open_now
            await asyncio.sleep(delay)
            t0 = time.perf_counter()
            open_now += 1
            try:
                async with session.post(url, data=BODY, headers=headers) as resp:
                    size = len(await resp.read())
                    if resp.status != 200 or size != expected:
                        failures[f"status {resp.status}, {size} bytes"] += 1
                        return
                durations.append(time.perf_counter() - t0)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failures[type(exc).__name__] += 1
            finally:
                open_now -= 1

        async def sample(done: asyncio.Event) -> None:
            """The RSS when the most streams are open (memory freed later stays with the process)."""
            while not done.is_set():
                if open_now > result.open_at_peak:
                    result.rss_peak_mb, result.open_at_peak = tree_rss(pid), open_now
                await asyncio.sleep(0.1)

        before, done = nstat(), asyncio.Event()
        sampler = asyncio.create_task(sample(done))
        step = args.within / max(1, args.streams)
        await asyncio.gather(*(one(i * step) for i in range(args.streams)))
        done.set()
        await sampler
        after = nstat()
    result.completed = len(durations)
    result.failures = dict(failures)
    result.p50_s, result.p99_s = pct(durations, 50), pct(durations, 99)
    grown = max(0.0, result.rss_peak_mb - result.rss_idle_mb)
    result.kb_per_open_stream = grown * 1024 / result.open_at_peak if result.open_at_peak else 0.0
    result.listen_drops = {k: after[k] - before[k] for k in NSTAT_COUNTERS}
    return result


class BurstBridge(Bridge):
    def __init__(self, extra: dict[str, str], **kw: Any) -> None:
        super().__init__(**kw)
        self.extra = extra

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}


async def run(args: argparse.Namespace) -> int:
    stack = Stack(keep=args.keep)
    try:
        upstream = Proc("upstream", [sys.executable, "-m", "bench.burst", "--serve-upstream", "--events",
                                     str(args.events), "--interval-ms", str(args.interval_ms)], child_env(),
                        stack.dir, ready_line=True)
        stack.procs.append(upstream)
        up = f"http://127.0.0.1:{upstream.read_ready_port()}"
        bare = Proc("bare", [sys.executable, "-m", "bench.passthrough", "--port", "0", "--upstream", up],
                    child_env(), stack.dir, ready_line=True)
        stack.procs.append(bare)
        bare_url = f"http://127.0.0.1:{bare.read_ready_port()}"
        extra = dict(item.split("=", 1) for item in args.bridge_env)
        if args.backlog:
            extra["CODER_AIBRIDGE_LISTEN_BACKLOG"] = args.backlog
        bridge = BurstBridge(extra, name="bridge", ablate="", work_dir=stack.dir, upstream_url=up,
                             workers=args.workers)
        stack.procs.append(bridge.start())
        async with aiohttp.ClientSession() as session:
            await bridge.wait_healthy(session)
        bridge.create_user()
        assert bridge.proc is not None
        expected = sum(len(e) for e in stream_events(args.events))
        results = [
            await burst("bare", f"{bare_url}/v1/chat/completions", {"Authorization": "Bearer sk-openai-central"},
                        bare.pid, args, expected),
            await burst("bridge", f"{bridge.url}/api/v2/aibridge/openai/v1/chat/completions",
                        {"Authorization": f"Bearer {bridge.token}"}, bridge.proc.pid, args, expected),
        ]
    finally:
        stack.stop()
        if args.keep:
            print(f"logs in {stack.dir}")
    report(results, args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": [asdict(r) for r in results]}, fh, indent=2)
    return 0 if all(r.completed == r.streams for r in results) else 1


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\n{args.streams} streams of {args.events} events ({args.interval_ms} ms apart), started within "
          f"{args.within:g} s; bridge workers: {args.workers}, backlog: {args.backlog or 'default'}")
    print(f"{'target':8} {'completed':>10} {'p50 s':>7} {'p99 s':>7} {'kB/open stream':>15} {'open at peak':>13} "
          f"{'listen drops':>13}  failures")
    for r in results:
        drops = sum(r.listen_drops.values())
        print(f"{r.target:8} {r.completed:>5}/{r.streams:<4} {r.p50_s:7.2f} {r.p99_s:7.2f} "
              f"{r.kb_per_open_stream:15.1f} {r.open_at_peak:13} {drops:13}  {r.failures or ''}")
    bare, bridge = results
    print(f"added p99 (bridge - bare): {bridge.p99_s - bare.p99_s:+.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--interval-ms", type=int, default=20)
    parser.add_argument("--within", type=float, default=1.0, help="seconds over which the streams start")
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--backlog", default="", help="CODER_AIBRIDGE_LISTEN_BACKLOG (empty: the default)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per stream, seconds")
    parser.add_argument("--json", default="")
    parser.add_argument("--bridge-env", action="append", default=[], metavar="NAME=VALUE",
                        help="another variable for the bridge (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) and print it")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        asyncio.run(serve_upstream(args.events, args.interval_ms / 1000))
        return
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
