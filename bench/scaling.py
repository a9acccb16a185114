"""Throughput of ``aibridge server --workers N`` for N = 1, 2, … all usable CPUs, and the scaling efficiency.

    python -m bench.scaling [--workers 1,2,auto] [--requests N] [--rounds R] [--concurrency C] [--json PATH]

Starts the fake upstream and one bridge per worker count (each its own SQLite data dir, auth and
recording on, as in ``bench.run``), then runs interleaved rounds: in each, every bridge gets a
batch of the blocking chat completion and of the 50-event chat stream at concurrency C over C
keep-alive connections, which the kernel spread over the workers when they were opened
(``SO_REUSEPORT``), as it does for real clients. Reported: requests/s (median of rounds), the speed-up over
one worker and the efficiency (speed-up / workers), and the CPU per request of the bridge's whole
process tree (supervisor + workers). At the end every bridge's export count must equal the
requests it answered.

The load generator and the fake upstream run on the same machine and take CPU too: on a small
machine they, not the bridge, set the ceiling. ``--wrk`` drives the load with ``wrk`` (C, a
fraction of the Python load generator's CPU; ``apt-get install wrk``) for ``--seconds`` per batch
instead, leaving more of the machine to the bridge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from aibridge.config import parse_workers
from bench.run import (
    WORKLOADS,
    Bridge,
    LoadGen,
    Proc,
    Stack,
    Target,
    central_headers,
    child_env,
    cpu_sample,
    learn_sizes,
    wait_records,
)

SCALING_WORKLOADS = ("chat blocking", "chat stream")


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}
"""


async def wrk_batch(url: str, headers: dict[str, str], body: bytes, seconds: float, concurrency: int,
                    work_dir: Path) -> tuple[int, float, int]:
    """(requests answered, requests/s, requests that failed) of one ``wrk`` run."""
    script = work_dir / "wrk.lua"
    script.write_text(WRK_SCRIPT.format(body=json.dumps(body.decode()), headers="\n".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())))
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script), url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await asyncio.wait_for(proc.communicate(), seconds + 60))[0].decode()
    answered = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if proc.returncode != 0 or not answered or not rate:
        raise RuntimeError(f"wrk failed: {out}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return int(answered.group(1)), float(rate.group(1)), errors + (int(bad.group(1)) if bad else 0)


def tree_cpu(pid: int) -> float:
    """utime + stime (seconds) of the supervisor and its workers (bench.run's process-tree CPU)."""
    used = cpu_sample(pid)
    return used.user + used.sys


async def run(args: argparse.Namespace) -> int:
    counts = [str(parse_workers(w)) for w in args.workers.split(",")]
    counts = list(dict.fromkeys(counts))                 # "2,auto" on a 2-CPU machine: once
    stack = Stack(keep=args.keep)
    try:
        py = sys.executable
        upstream = Proc("upstream", [py, "-m", "tests.fakes.upstream", "--port", "0"], child_env(), stack.dir,
                        ready_line=True)
        stack.procs.append(upstream)
        stack.upstream_url = f"http://127.0.0.1:{upstream.read_ready_port()}"
        for n in counts:
            bridge = stack.bridges[f"workers={n}"] = Bridge(f"workers-{n}", "", stack.dir, stack.upstream_url, n)
            stack.procs.append(bridge.start())
        async with aiohttp.ClientSession() as session:
            for bridge in stack.bridges.values():
                await bridge.wait_healthy(session)
        for bridge in stack.bridges.values():
            bridge.create_user()
        print(f"usable CPUs: {parse_workers('auto')}; bridges: "
              + ", ".join(f"{name} (pid {b.proc.pid})" for name, b in stack.bridges.items()))  # type: ignore[union-attr]

        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=60)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        wrk_answered: dict[str, int] = {}      # per bridge: what wrk counted (it may cut a few off at its end)
        wrk_failed = 0
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            targets = {name: b.target() for name, b in stack.bridges.items()}
            direct = Target("direct", stack.upstream_url, central_headers(), None)
            gen = LoadGen(session, await learn_sizes(session, direct))
            for name in SCALING_WORKLOADS:
                for target in targets.values():
                    await gen.batch(target, WORKLOADS[name], args.warmup, 16)
            started = time.monotonic()
            for rnd in range(args.rounds):
                order = list(targets) if rnd % 2 == 0 else list(targets)[::-1]
                for name in SCALING_WORKLOADS:
                    for tname in order:
                        bridge = stack.bridges[tname]
                        assert bridge.proc is not None
                        cpu0 = tree_cpu(bridge.proc.pid)
                        target, w = targets[tname], WORKLOADS[name]
                        if args.wrk:
                            answered, rps, failed = await wrk_batch(
                                target.url(w), target.headers[w.provider], w.body, args.seconds, args.concurrency,
                                stack.dir)
                            wrk_answered[bridge.name] = wrk_answered.get(bridge.name, 0) + answered
                            wrk_failed += failed
                        else:
                            batch = await gen.batch(target, w, args.requests, args.concurrency)
                            answered, rps = args.requests, batch.rps
                        await asyncio.sleep(0.15)
                        cpu_us = (tree_cpu(bridge.proc.pid) - cpu0) / answered * 1e6
                        results.setdefault((name, tname), []).append((rps, cpu_us))
                print(f"  round {rnd + 1}/{args.rounds} done ({time.monotonic() - started:.0f} s)")
            recorded = {}
            for tname, bridge in stack.bridges.items():
                expected = gen.sent.get(bridge.name, 0) + wrk_answered.get(bridge.name, 0)
                count, _ = await wait_records(session, bridge, expected)
                recorded[tname] = (count, expected)

        rows = report(results, counts, args)
        # wrk stops mid-request at its deadline: the bridge may have answered (and recorded) a few
        # requests wrk no longer counted, never fewer.
        ok = not gen.first_error and not wrk_failed and all(
            e <= c <= e + (args.concurrency * args.rounds * len(SCALING_WORKLOADS) if args.wrk else 0)
            for c, e in recorded.values())
        for tname, (count, expected) in recorded.items():
            print(f"{tname} records: export count {count}; requests answered {expected}"
                  + (" (as counted by wrk, which cuts off the requests in flight at its deadline)" if args.wrk else ""))
        if wrk_failed:
            print(f"wrk: {wrk_failed} requests failed")
        if gen.first_error:
            print(f"first error: {gen.first_error}")
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows,
                                                   "recorded": recorded}, indent=2))
        return 0 if ok else 1
    finally:
        stack.stop()


def report(results: dict[tuple[str, str], list[tuple[float, float]]], counts: list[str],
           args: argparse.Namespace) -> list[dict[str, Any]]:
    print()
    batch = f"{args.seconds:g} s of wrk" if args.wrk else f"{args.requests} requests"
    print(f"requests/s at concurrency {args.concurrency} (keep-alive connections), median of {args.rounds} "
          f"interleaved rounds of {batch}; CPU = the bridge's process tree per request")
    print()
    head = f"{'workload':<15}{'workers':>8}{'req/s':>9}{'speed-up':>10}{'efficiency':>12}{'CPU µs/req':>12}"
    print(head)
    print("-" * len(head))
    rows = []
    for name in SCALING_WORKLOADS:
        base = statistics.median(r for r, _ in results[(name, f"workers={counts[0]}")])
        for n in counts:
            runs = results[(name, f"workers={n}")]
            rps = statistics.median(r for r, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            speed = rps / base if base else float("nan")
            eff = speed / (int(n) / int(counts[0]))
            print(f"{name:<15}{n:>8}{rps:>9.0f}{speed:>9.2f}x{eff:>11.0%}{cpu:>12.0f}")
            rows.append({"workload": name, "workers": int(n), "req_per_s": rps, "speed_up": speed,
                         "efficiency": eff, "cpu_us_per_req": cpu})
    print()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,auto", help="worker counts to compare (default 1,2,auto)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per batch (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per bridge and workload")
    parser.add_argument("--wrk", action="store_true", help="load from wrk (apt-get install wrk) instead of Python")
    parser.add_argument("--seconds", type=float, default=10.0, help="with --wrk: seconds per batch (default 10)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, SQLite databases)")
    args = parser.parse_args()
    os.environ.pop("CODER_AIBRIDGE_WORKERS", None)
    try:
        sys.exit(asyncio.run(run(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; processes stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
