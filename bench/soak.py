"""Soak: the bridge at a steady load for a long time; does anything grow?

    python -m bench.soak [--minutes 10] [--rate 100] [--workers 1] [--postgres-url URL] [--json PATH]

Starts the fake upstream and one bridge (SQLite in a temp dir, or the given PostgreSQL), then
sends ``--rate`` requests per second (half blocking chat completions, half 50-event streams,
over at most 64 keep-alive connections) for ``--minutes``. Every ``--sample`` seconds it reads,
over the bridge's whole process tree (supervisor and workers): RSS, open file descriptors,
open sockets, and the p50/p99 latency of the requests of that interval.

Verdict (exit status 1 when one fails), the end being the median of the last three samples (one
noisy minute on a shared machine is not a trend): after the warm-up (the first sample), RSS grows
at most 5%; file descriptors and sockets do not keep growing (at most the warm-up count plus 16,
what connections coming and going explain); p99 at most twice the warm-up interval's; no
request failed; the export count equals the requests answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from bench.run import WORKLOADS, Bridge, LoadGen, Proc, Stack, Target, central_headers, child_env, learn_sizes, pct
from bench.run import wait_records as wait_export

CONNECTIONS = 64


@dataclass
class Sample:
    at_s: float
    rss_mb: float
    fds: int
    sockets: int
    requests: int
    p50_ms: float
    p99_ms: float


def tree(pid: int) -> list[int]:
    pids = [pid]
    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as fh:
        pids += [int(p) for p in fh.read().split()]
    return pids


def rss_fds_sockets(pid: int) -> tuple[float, int, int]:
    rss, fds, sockets = 0.0, 0, 0
    for one in tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{one}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{one}/fd"):
                fds += 1
                with contextlib.suppress(OSError):
                    sockets += os.readlink(f"/proc/{one}/fd/{fd}").startswith("socket:")
    return rss, fds, sockets


class Load:
    """Requests at a steady rate; latencies collected per sampling interval."""

    def __init__(self, gen: LoadGen, target: Target, rate: float) -> None:
        self.gen = gen
        self.target = target
        self.rate = rate
        self.latencies: list[float] = []
        self.errors = 0
        self.sent = 0
        self._slots = asyncio.Semaphore(CONNECTIONS)

    async def one(self, stream: bool) -> None:
        w = WORKLOADS["chat stream" if stream else "chat blocking"]
        url = self.target.url(w)
        headers = {"Content-Type": "application/json", **self.target.headers[w.provider]}
        try:
            latency, _, size, status = await self.gen.one(url, headers, w)
            if status != 200 or size != self.gen.expected[w.name]:
                self.errors += 1
            else:
                self.latencies.append(latency)
        except (aiohttp.ClientError, TimeoutError):
            self.errors += 1
        finally:
            self._slots.release()

    async def run(self, seconds: float) -> None:
        started = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * self.rate) - self.sent
            for _ in range(max(0, due)):
                await self._slots.acquire()         # at most CONNECTIONS in flight: never an unbounded pile
                task = asyncio.create_task(self.one(self.sent % 2 == 1))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.sent += 1
            await asyncio.sleep(0.005)
        if tasks:
            await asyncio.gather(*tasks)

    def take(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


async def run(args: argparse.Namespace) -> int:
    stack = Stack(keep=args.keep)
    samples: list[Sample] = []
    try:
        py = sys.executable
        upstream = Proc("upstream", [py, "-m", "tests.fakes.upstream", "--port", "0"], child_env(), stack.dir,
                        ready_line=True)
        stack.procs.append(upstream)
        stack.upstream_url = f"http://127.0.0.1:{upstream.read_ready_port()}"
        bridge = Bridge("bridge", "", stack.dir, stack.upstream_url, str(args.workers))
        if args.postgres_url:
            real_env = bridge.env
            bridge.env = lambda: {**real_env(), "CODER_PG_CONNECTION_URL": args.postgres_url}  # type: ignore[method-assign]
        stack.bridges["bridge"] = bridge
        proc = bridge.start()
        stack.procs.append(proc)
        connector = aiohttp.TCPConnector(limit=CONNECTIONS, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            await bridge.wait_healthy(session)
            bridge.create_user()
            direct = Target("direct", stack.upstream_url, central_headers(), None)
            gen = LoadGen(session, await learn_sizes(session, direct))
            load = Load(gen, bridge.target(), args.rate)
            runner = asyncio.create_task(load.run(args.minutes * 60))
            started = time.monotonic()
            print(f"{'at s':>6}{'RSS MB':>9}{'fds':>6}{'sockets':>9}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}")
            while not runner.done():
                await asyncio.wait({runner}, timeout=args.sample)
                latencies = load.take()
                rss, fds, sockets = rss_fds_sockets(proc.pid)
                sample = Sample(round(time.monotonic() - started, 1), rss, fds, sockets, len(latencies),
                                pct(latencies, 50) * 1e3, pct(latencies, 99) * 1e3)
                samples.append(sample)
                print(f"{sample.at_s:>6.0f}{sample.rss_mb:>9.1f}{sample.fds:>6}{sample.sockets:>9}"
                      f"{sample.requests:>10}{sample.p50_ms:>9.2f}{sample.p99_ms:>9.2f}", flush=True)
            await runner
            count, _ = await wait_export(session, bridge, load.sent)
        return verdict(samples, load, count, args)
    finally:
        stack.stop()


def verdict(samples: list[Sample], load: Load, recorded: int, args: argparse.Namespace) -> int:
    full = [s for s in samples if s.requests >= args.rate * args.sample / 2]     # whole intervals only
    problems = []
    if len(full) >= 2:
        warm, tail = full[0], full[1:][-3:]
        last = Sample(tail[-1].at_s, *(statistics.median(getattr(s, f) for s in tail)
                                       for f in ("rss_mb", "fds", "sockets", "requests", "p50_ms", "p99_ms")))
        growth = (last.rss_mb - warm.rss_mb) / warm.rss_mb
        print(f"RSS {warm.rss_mb:.1f} → {last.rss_mb:.1f} MB ({growth:+.1%}); fds {warm.fds} → {last.fds}; "
              f"sockets {warm.sockets} → {last.sockets}; p99 {warm.p99_ms:.2f} → {last.p99_ms:.2f} ms")
        if growth > 0.05:
            problems.append(f"RSS grew {growth:.1%} after warm-up (limit 5%)")
        if last.fds > warm.fds + 16 or last.sockets > warm.sockets + 16:
            problems.append("file descriptors or sockets keep growing")
        if last.p99_ms > 2 * warm.p99_ms:
            problems.append("p99 more than doubled")
    else:
        problems.append("too short: fewer than two samples with requests")
    if load.errors:
        problems.append(f"{load.errors} requests failed")
    if recorded != load.sent:
        problems.append(f"export count {recorded} != {load.sent} requests answered")
    print(f"requests: {load.sent} sent, {load.errors} failed, {recorded} recorded")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "samples": [asdict(s) for s in samples],
                                               "problems": problems}, indent=2))
    print("OK" if not problems else "FAILED: " + "; ".join(problems))
    return 0 if not problems else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    parser.add_argument("--sample", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument("--workers", type=int, default=1, help="CODER_AIBRIDGE_WORKERS of the bridge (default 1)")
    parser.add_argument("--postgres-url", default="", help="record into this PostgreSQL instead of SQLite")
    parser.add_argument("--json", help="also write the samples to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, SQLite database)")
    args = parser.parse_args()
    try:
        sys.exit(asyncio.run(run(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; processes stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
