"""Python function calls per request: the bridge beside the bare pass-through (bench only).

    python -m bench.calls [--workload NAME ...] [--requests N] [--concurrency C]

Starts the fake upstream, the bare pass-through and one bridge (``bench.ablate_server`` with the
no-op ablation ``calls``), warms each up, then counts every Python and C function call that each
one's event-loop thread makes while it answers ``--requests`` requests (``bench/callcount.py``:
cProfile switched on and off by signal). Prints the calls per request by package, and the
bridge's own functions that make the most calls.

A count does not depend on how busy the machine is, unlike CPU time: a change to the request path
can be judged by the calls it removes before a side-by-side CPU run. Calls are not all equal
(orjson parses a body in one call; a substring search walks the whole chunk in one call), so
this complements ``bench.run``, it does not replace it. The SQLite writer thread is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import callcount
from bench.run import ALL_WORKLOADS, WORKLOADS, LoadGen, Stack, Target, Workload, learn_sizes

DUMP_TIMEOUT = 30.0
Key = tuple[str, int, str]


def group(filename: str) -> str:
    """The package a function belongs to: ``aibridge``, ``aiohttp``, ``asyncio``, …"""
    if filename.startswith(("~", "<")):
        return "python internals"
    if "/src/aibridge/" in filename:
        return "aibridge"
    if "/bench/" in filename:
        return "pass-through handler"
    if "site-packages/" in filename:
        return filename.rpartition("site-packages/")[2].split("/")[0].removesuffix(".py")
    if "/python3." in filename:       # the standard library
        return "stdlib " + filename.rpartition("/python3.")[2].partition("/")[2].split("/")[0].removesuffix(".py")
    return "other"


class Counts:
    """One profile: calls per request by group, and per function of the bridge's own code."""

    def __init__(self, path: Path, requests: int) -> None:
        stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
        self.requests = requests
        self.python: collections.Counter[str] = collections.Counter()   # calls of Python functions
        self.c: collections.Counter[str] = collections.Counter()        # calls of C functions, by caller
        self.made: collections.Counter[Key] = collections.Counter()      # calls each function made
        self.called: dict[Key, float] = {}
        for key, (_, ncalls, _, _, callers) in stats.items():
            self.called[key] = ncalls / requests
            builtin = key[0] == "~"
            if not builtin:
                self.python[group(key[0])] += ncalls / requests
            for caller, (_, caller_calls, *_rest) in callers.items():
                self.made[caller] += caller_calls / requests
                if builtin:
                    self.c[group(caller[0])] += caller_calls / requests

    @property
    def total(self) -> float:
        return sum(self.called.values())


async def profile(gen: LoadGen, target: Target, w: Workload, n: int, concurrency: int, warmup: int,
                  out_dir: Path) -> Counts:
    assert target.proc is not None
    out = out_dir / f"{target.proc.pid}.prof"
    out.unlink(missing_ok=True)
    await gen.batch(target, w, warmup, concurrency)
    os.kill(target.proc.pid, signal.SIGUSR1)
    await asyncio.sleep(0.2)
    done = await gen.batch(target, w, n, concurrency)
    if target.is_bridge:
        await gen.recorder_settled(target)
    os.kill(target.proc.pid, signal.SIGUSR2)
    deadline = time.monotonic() + DUMP_TIMEOUT
    while not out.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target.name} wrote no profile within {DUMP_TIMEOUT}s")
        await asyncio.sleep(0.05)
    if done.errors:
        raise RuntimeError(f"{target.name} {w.name}: {done.errors} failed requests ({gen.first_error})")
    return Counts(out, n)


def report(w: Workload, bare: Counts, bridge: Counts, top: int) -> None:
    print(f"\n{w.name}: calls per request (Python functions + C functions they call)")
    groups = sorted(set(bare.python) | set(bare.c) | set(bridge.python) | set(bridge.c),
                    key=lambda g: -(bridge.python[g] + bridge.c[g]))
    print(f"  {'package':28s} {'bare':>14s} {'bridge':>14s}")
    for g in groups:
        b, r = bare.python[g] + bare.c[g], bridge.python[g] + bridge.c[g]
        if max(b, r) >= 0.5:
            print(f"  {g:28s} {bare.python[g]:6.0f} + {bare.c[g]:5.0f} {bridge.python[g]:6.0f} + {bridge.c[g]:5.0f}")
    print(f"  {'total':28s} {bare.total:14.0f} {bridge.total:14.0f}   bridge/bare {bridge.total / bare.total:.2f}x")
    own = [(key, bridge.called[key], bridge.made[key]) for key in bridge.called if group(key[0]) == "aibridge"]
    own.sort(key=lambda row: -(row[1] + row[2]))
    print(f"  the bridge's own functions with the most calls (called + calls made, per request; top {top}):")
    for (filename, line, name), called, made in own[:top]:
        print(f"    {called:6.1f} + {made:6.1f}  {filename.rpartition('/src/')[2]}:{line} {name}")


async def run(args: argparse.Namespace) -> None:
    out_dir = Path(tempfile.mkdtemp(prefix="aibridge-calls-"))
    os.environ[callcount.ENV] = str(out_dir)        # both proxies inherit it
    stack = Stack(keep=False)
    try:
        await stack.start({"counted": "calls"})
        targets = stack.targets()
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            gen = LoadGen(session, await learn_sizes(session, targets["direct"]))
            for name in args.workload or ALL_WORKLOADS:
                w = WORKLOADS[name]
                bare, bridge = [await profile(gen, targets[t], w, args.requests, args.concurrency, args.warmup,
                                              out_dir) for t in ("bare", "counted")]
                report(w, bare, bridge, top=args.top)
    finally:
        stack.stop()
        shutil.rmtree(out_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", action="append", choices=ALL_WORKLOADS, metavar="NAME",
                        help=f"only this workload (repeatable): {', '.join(ALL_WORKLOADS)}")
    parser.add_argument("--requests", type=int, default=1000, help="counted requests per target (default 1000)")
    parser.add_argument("--warmup", type=int, default=200, help="requests before counting (default 200)")
    parser.add_argument("--concurrency", type=int, default=64, help="default 64")
    parser.add_argument("--top", type=int, default=15, help="how many of the bridge's functions to list")
    args = parser.parse_args()
    if min(args.requests, args.warmup, args.concurrency) < 1:
        parser.error("--requests, --warmup and --concurrency must be at least 1")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
