"""A CPU-time sampling profiler for the event loop's thread (bench only).

    AIBRIDGE_BENCH_SAMPLE=/tmp/samples python -m bench.run --variant all=gcstats --variant min=record,auth,client

With ``AIBRIDGE_BENCH_SAMPLE`` set to a directory, the bare pass-through and every ``--variant``
bridge (``bench.ablate_server``) write ``<dir>/<pid>.txt`` (``bench.run`` prints each target's pid;
``gcstats`` changes nothing, so a variant with only it is the whole bridge).

``ITIMER_PROF`` fires after every 0.5 ms of the process's CPU time; the handler (run on the main
thread at its next bytecode) counts the main thread's Python stack. Unlike py-spy it does not stop
the process per sample, and idle time is never sampled, so the counts are CPU time: compare two
processes' counts per request. Time in C (uvloop, aiohttp's parsers, system calls) lands on the
Python frame that called it, or on the next callback the loop runs. The file is rewritten every
second in py-spy's raw format (``frame;frame;… count``): read it with ``bench.profile_report``.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from pathlib import Path
from types import FrameType

INTERVAL = 0.0005


def _frame(frame: FrameType) -> str:
    code = frame.f_code
    return f"{code.co_name} ({code.co_filename.rpartition('site-packages/')[2].rpartition('src/')[2]})"


def install_from_env() -> None:
    import os
    if where := os.environ.get("AIBRIDGE_BENCH_SAMPLE"):
        Path(where).mkdir(parents=True, exist_ok=True)
        install(str(Path(where) / f"{os.getpid()}.txt"))


def install(out: str) -> None:
    counts: collections.Counter[str] = collections.Counter()

    def sample(signum: int, frame: FrameType | None) -> None:
        stack: list[str] = []
        while frame is not None and len(stack) < 60:
            stack.append(_frame(frame))
            frame = frame.f_back
        counts[";".join(["thread (main): MainThread", *reversed(stack)])] += 1

    def dump() -> None:
        while True:
            time.sleep(1.0)
            lines = [f"{stack} {n}\n" for stack, n in list(counts.items())]
            Path(out).write_text("".join(lines))

    signal.signal(signal.SIGPROF, sample)
    signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)
    threading.Thread(target=dump, name="cpusampler", daemon=True).start()
