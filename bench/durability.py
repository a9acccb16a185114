"""What the durability point costs on the request path, in-process (no server, no network).

Per interception the recording addon submits 4 records (start, prompt, usage, end); each is
encoded at once and the end writes them to the journal with one ``os.write``. Compared: the
recorder as it is; the same with the append replaced by nothing (the encoding alone); and the
recorder before the durability point (a list append per record).
Also: one ``fsync`` of the journal (done once per database batch, in a worker thread).

    python -m bench.durability [--seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aibridge.recording.journal import Journal
from aibridge.recording.recorder import Recorder
from aibridge.store import records as rec
from aibridge.store.db import create_engine


def _records(user: uuid.UUID) -> list[rec.Record]:
    iid = uuid.uuid4()
    return [rec.InterceptionStart(iid, user, "openai", "openai", "chat_completions", "gpt-4.1", "Codex", "sess",
                                  "codex_cli_rs/0.50", {"streaming": True, "route": "/v1/chat/completions"}),
            rec.PromptRecord(iid, "", "Explain what this function does and suggest a better name. " * 4, {}),
            rec.TokenUsageRecord(iid, "chatcmpl-123", 1200, 340, 800, 0, {"reasoning_tokens": 64}),
            rec.InterceptionEnd(iid)]


def _per_interception(recorder: Recorder, seconds: float) -> float:
    """CPU µs per interception (4 submits), median of 5 rounds."""
    user = uuid.uuid4()
    batches = [_records(user) for _ in range(2000)]
    rounds = []
    for _ in range(5):
        done = 0
        start = time.process_time()
        deadline = time.perf_counter() + seconds / 5
        while time.perf_counter() < deadline:
            for records in batches[:200]:
                for record in records:
                    recorder.submit(record)
            done += 200
            recorder._pending.clear()           # no writer running: keep memory flat
            recorder.journal.truncate_current()
        rounds.append((time.process_time() - start) / done * 1e6)
    return statistics.median(rounds)


def _fsync_cost(path: Path, repeat: int = 50) -> float:
    journal = Journal(path)
    times = []
    for _ in range(repeat):
        journal.append(b"x" * 2000 + b"\n")
        handle = journal.sync_handle()
        assert handle is not None
        start = time.perf_counter()
        os.fsync(handle)
        times.append(time.perf_counter() - start)
        os.close(handle)
    journal.close()
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aibridge-durability-") as tmp:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp}/db.sqlite")
        journaled = Recorder(engine, Path(tmp) / "journal")
        memory_only = Recorder(engine, Path(tmp) / "journal2")
        noop: Callable[[bytes], int] = lambda data: 0      # noqa: E731
        memory_only.journal.append = noop                  # type: ignore[method-assign,assignment]
        before = Recorder(engine, Path(tmp) / "journal4")     # the recorder before: a list append per record
        before.submit = before._pending.append              # type: ignore[method-assign,assignment]
        with_journal = _per_interception(journaled, args.seconds)
        without = _per_interception(memory_only, args.seconds)
        baseline = _per_interception(before, args.seconds)
        fsync = _fsync_cost(Path(tmp) / "journal3")
        asyncio.run(engine.dispose())
    print(f"recording, 4 records per interception, journaled at its end : {with_journal:7.1f} µs CPU")
    print(f"the same, memory only (no journal write)                    : {without:7.1f} µs CPU")
    print(f"the recorder before (a list append per record, no journal)  : {baseline:7.1f} µs CPU")
    print(f"cost of the durability point per interception               : {with_journal - baseline:7.1f} µs CPU")
    print(f"one fsync of the journal (once per database batch, off-loop): {fsync:7.1f} µs wall")


if __name__ == "__main__":
    main()
