"""Counts the Python function calls of the event loop's thread, on signal (bench only).

With ``AIBRIDGE_BENCH_CALLS`` set to a directory, the bare pass-through and a ``bench.ablate_server``
bridge (any ablation; ``calls`` changes nothing) wait for signals: SIGUSR1 starts a fresh cProfile
of the main thread (the event loop's), SIGUSR2 stops it and writes ``<dir>/<pid>.prof``. Start-up
and warm-up stay out of the counts. ``bench.calls`` drives this.

Calls are counted, not timed: the count of a batch does not depend on how busy the machine is
(only on how the kernel cut the streams into reads), where CPU time on these machines varies by
tens of percent from one run to the next. Threads other than the loop's (the SQLite writer) are
not profiled.
"""

from __future__ import annotations

import cProfile
import os
import signal
from pathlib import Path
from types import FrameType

ENV = "AIBRIDGE_BENCH_CALLS"


def install_from_env() -> None:
    if where := os.environ.get(ENV):
        Path(where).mkdir(parents=True, exist_ok=True)
        install(Path(where) / f"{os.getpid()}.prof")


def install(out: Path) -> None:
    current: list[cProfile.Profile] = []

    def start(signum: int, frame: FrameType | None) -> None:
        if not current:
            current.append(cProfile.Profile())
            current[0].enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        if current:
            profile = current.pop()
            profile.disable()
            partial = out.with_suffix(".part")
            profile.dump_stats(str(partial))
            partial.replace(out)        # whole or absent: the reader polls for it

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
