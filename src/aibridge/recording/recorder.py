"""The background writer: records are journaled at once and written to the database in batches.

The durability point. ``submit`` keeps a record in memory and encodes it for the journal; the
journal lines are written (one ``os.write`` for everything waiting) when an interception's end
is submitted, and before every database batch. The flow submits the end in the same event-loop
step that finishes the answer, so once a client has its whole answer, every record of that
interception is in the journal file: a ``kill -9`` loses nothing answered. Against a machine
crash the journal is ``fsync``'d once per batch, in a worker thread (a group commit: one fsync
covers every request of the batch, off the event loop).

The rule: the recorder never dies. A batch the database does not take stays where it is and is
retried with backoff (0.2 s doubling to 5 s); its cause is logged once per outage, and health,
metrics and ``/healthz`` show it. Records keep flowing into the journal meanwhile; past
``max_pending`` records in memory, memory lets go of them (they are in the journal) and the
writer replays the journal from disk once the database answers. When the journal cannot be
written either (a full disk), records stay in memory up to ``max_pending``; beyond that the
oldest are dropped and counted (the only way a record is lost). A batch the database refuses
because of its data is split until the one bad record is found; that record is kept in
``records.rejected`` beside the journal. Values are made storable (``store/sanitize.py``)
before the database sees them. Inserts are idempotent, so replaying a record twice is harmless.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.recording.journal import Journal, encode_record
from aibridge.store import records as rec
from aibridge.store.sanitize import clean_record
from aibridge.store.writer import BatchWriter, refuses_data

log = logging.getLogger("aibridge.recorder")

FIRST_RETRY = 0.2
LAST_RETRY = 5.0
JOURNAL_RETRY = 1.0


@dataclass
class Trouble:
    """One kind of failure (database or journal): counted always, logged once per outage."""

    what: str
    failures: int = 0
    since: float | None = None          # wall clock of the first failure of the current outage
    cause: str | None = None

    def failed(self, exc: BaseException, detail: str) -> None:
        self.failures += 1
        cause = describe(exc)
        if self.since is None:
            self.since = time.time()
            log.error("recording: %s failed: %s; %s", self.what, cause, detail)
        elif cause != self.cause:
            log.debug("recording: %s still failing: %s", self.what, cause)
        self.cause = cause

    def recovered(self, detail: str) -> None:
        if self.since is not None:
            log.warning("recording: %s works again after %.1f s; %s", self.what, time.time() - self.since, detail)
            self.since = self.cause = None

    def snapshot(self) -> dict[str, Any]:
        return {"ok": self.since is None, "failures": self.failures, "error": self.cause,
                "failing_since": _iso(self.since)}


def describe(exc: BaseException) -> str:
    """The real cause: the driver's error under SQLAlchemy's wrapper, on one line."""
    orig = getattr(exc, "orig", None) if isinstance(exc, sa.exc.DBAPIError) else None
    cause = orig if isinstance(orig, BaseException) else exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}"[:300] if text else type(cause).__name__


def _iso(stamp: float | None) -> str | None:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat() if stamp is not None else None


@dataclass
class _Buffered:
    records: list[rec.Record] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    last_index: int = -1                # of the newest record also kept in memory


class Recorder:
    def __init__(self, engine: AsyncEngine, journal_dir: Path, *, batch_size: int = 2000, linger: float = 0.2,
                 max_pending: int = 20_000, fsync: bool = True) -> None:
        self._writer = BatchWriter(engine)
        self.journal = Journal(journal_dir)
        self.rejected_path = journal_dir / "records.rejected"
        self._batch_size = batch_size
        self._linger = linger
        self._max_pending = max_pending
        self._fsync = fsync
        self._pending: collections.deque[rec.Record] = collections.deque()
        self._head = 0                  # index (in submission order) of _pending[0]
        self._buffer = _Buffered()      # encoded, not yet in the journal file
        self._segment_last: dict[int, int] = {}     # segment -> index of the newest record in it
        self._spilled = False           # the journal on disk holds records memory does not
        self._unjournaled = 0           # records in memory whose journal append failed
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._retry = FIRST_RETRY
        self._journal_retry_at = 0.0
        self._dropping = False          # logged that records are being dropped (reset by a good write)
        self.database = Trouble("database write")
        self.journal_trouble = Trouble("journal append")
        self.written = 0
        self.dropped = 0                # records lost: neither the journal nor memory could keep them
        self.rejected = 0               # records the database refused even cleaned (in records.rejected)

    # ------------------------------------------------------------------ the request path

    def submit(self, record: rec.Record) -> None:
        """Accept a record; never raises, never blocks (one ``os.write`` at an interception's end)."""
        try:
            line = encode_record(record)
        except (TypeError, ValueError):     # a lone surrogate or the like: clean it now
            record = clean_record(record)
            line = encode_record(record)
        buffered = self._buffer
        buffered.lines.append(line)
        buffered.records.append(record)
        if not self._spilled:
            self._pending.append(record)
            buffered.last_index = self._head + len(self._pending) - 1
            if len(self._pending) == 1 or len(self._pending) >= self._batch_size:
                self._wakeup.set()
        if isinstance(record, rec.InterceptionEnd):
            self.flush()
            if len(self._pending) > self._max_pending:
                self._overflow()

    def flush(self) -> None:
        """Write what waits in the buffer to the journal with one system call."""
        buffered = self._buffer
        if not buffered.lines:
            return
        self._buffer = _Buffered()
        if time.monotonic() < self._journal_retry_at:      # failing: try again at most once a second
            self._not_journaled(buffered)
            return
        try:
            seq = self.journal.append(b"\n".join(buffered.lines) + b"\n")
        except OSError as exc:
            self._journal_retry_at = time.monotonic() + JOURNAL_RETRY
            self.journal_trouble.failed(exc, f"records are kept in memory (up to {self._max_pending})")
            self._not_journaled(buffered)
            return
        self.journal_trouble.recovered("records are journaled again")
        if not self._spilled:           # spilled segments belong to the replay, not to memory
            self._segment_last[seq] = max(self._segment_last.get(seq, -1), buffered.last_index)

    def _not_journaled(self, buffered: _Buffered) -> None:
        if self._spilled:               # not in memory yet: keep them there now
            self._keep_in_memory(buffered.records)
        else:
            self._unjournaled += len(buffered.records)

    def _keep_in_memory(self, records: Sequence[rec.Record]) -> None:
        self._pending.extend(records)
        excess = len(self._pending) - self._max_pending
        for _ in range(max(0, excess)):
            self._pending.popleft()
            self._head += 1
            self.dropped += 1
        if excess > 0 and not self._dropping:       # once per outage; the metric counts them all
            self._dropping = True
            log.error("recording: records are being dropped: the database and the journal both fail "
                      "and memory holds at most %d", self._max_pending)
        self._wakeup.set()

    def _overflow(self) -> None:
        """Too much in memory while the database fails: let the journal alone hold it."""
        try:
            if time.monotonic() < self._journal_retry_at:
                raise OSError("the journal is failing")
            seq = self.journal.append(b"".join(encode_record(r) + b"\n" for r in self._pending))
        except OSError:
            self._keep_in_memory([])
            return
        log.warning("recording: %d records waiting for the database now wait in the journal only (%s)",
                    len(self._pending), self.journal.directory / f"records.{seq:010d}.jsonl")
        self._head += len(self._pending)
        self._pending.clear()
        self._unjournaled = 0
        self._segment_last.clear()
        self._spilled = True

    # ------------------------------------------------------------------ state

    @property
    def pending(self) -> int:
        """Records in memory not yet in the database (buffered ones are in ``_pending`` unless spilled)."""
        return len(self._pending) + (len(self._buffer.records) if self._spilled else 0)

    def health(self) -> dict[str, Any]:
        return {"ok": self.database.since is None and self.journal_trouble.since is None and not self._spilled,
                "pending": self.pending, "journal_bytes": self.journal.bytes_on_disk(),
                "replaying_journal": self._spilled, "written": self.written, "dropped": self.dropped,
                "rejected": self.rejected, "database": self.database.snapshot(),
                "journal": self.journal_trouble.snapshot()}

    # ------------------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Replay what an earlier process left in the journal (once now, in the background after)."""
        if self.journal.segments():
            self._spilled = True
            with contextlib.suppress(Exception):
                await self._drain_journal()
        self._task = asyncio.create_task(self._run(), name="recorder")

    async def close(self) -> None:
        """Write everything pending; what the database will not take stays in the journal."""
        self._closing = True
        self._stop.set()
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._journal_retry_at = 0.0    # one last try, whatever the cooldown
        self.flush()
        if self._pending and self._unjournaled:
            self._overflow()            # memory-only records (the journal failed): one more try
        self.journal.close()
        self._writer.close()

    # ------------------------------------------------------------------ the writer task

    async def _run(self) -> None:
        while True:
            try:
                if not await self._step():
                    return
            except Exception as exc:        # the recorder never dies
                log.exception("recording: unexpected error in the writer (retrying): %s", describe(exc))
                self.database.failed(exc, "retrying")
                await self._pause()

    async def _step(self) -> bool:
        """One round of work; False when closing and nothing is left to do."""
        if self._spilled and not await self._drain_journal():
            return await self._pause()
        if not self._pending:
            if self._closing:
                return False
            self._wakeup.clear()
            await self._wakeup.wait()
            return True
        if self._linger and not self._closing and len(self._pending) < self._batch_size:
            await asyncio.sleep(self._linger)      # let a burst gather into one transaction
        self.flush()
        await self._sync()
        first = self._head
        batch = [self._pending[i] for i in range(min(self._batch_size, len(self._pending)))]
        if not await self._write(batch):
            return await self._pause()
        self._committed(first + len(batch))
        return True

    async def _pause(self) -> bool:
        """Back off before the next try; False (stop) when closing."""
        if self._closing:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), self._retry)
        self._retry = min(self._retry * 2, LAST_RETRY)
        return not self._closing

    async def _sync(self) -> None:
        handle = self.journal.sync_handle() if self._fsync else None
        if handle is None:
            return

        def sync() -> None:
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        try:
            await asyncio.to_thread(sync)
        except OSError as exc:
            self.journal_trouble.failed(exc, "records are kept in memory")

    def _committed(self, upto: int) -> None:
        """Records before index ``upto`` are in the database: forget them and their segments."""
        while self._pending and self._head < upto:
            self._pending.popleft()
            self._head += 1
        if self._spilled:
            return
        current = self.journal.current_seq
        for seq, last in list(self._segment_last.items()):
            if last >= upto or (seq == current and self._buffer.lines):
                continue
            try:
                if seq == current:
                    self.journal.truncate_current()
                else:
                    self.journal.remove(self.journal.directory / f"records.{seq:010d}.jsonl")
            except OSError as exc:
                self.journal_trouble.failed(exc, "the journal keeps records already written (harmless)")
                continue
            del self._segment_last[seq]

    async def _write(self, batch: list[rec.Record]) -> bool:
        """Write a batch; True when it is in the database (or its refused records set aside)."""
        try:
            await self._writer.write(batch)
        except Exception as exc:
            if not refuses_data(exc):
                self.database.failed(exc, f"{self.pending} records are kept (journal {self.journal.directory}) "
                                          "and retried")
                return False
            await self._isolate(batch, exc)
        self.written += len(batch)
        self._retry = FIRST_RETRY
        self._dropping = False
        self._journal_retry_at = 0.0
        self._dropping = False          # logged that records are being dropped (reset by a good write)
        self.database.recovered(f"{self.pending} records left to write")
        return True

    async def _isolate(self, batch: list[rec.Record], exc: BaseException) -> None:
        """The database refused the batch's data: find the refused records by halving it."""
        if len(batch) == 1:
            self._reject(batch[0], exc)
            return
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            try:
                await self._writer.write(half)
            except Exception as err:
                if not refuses_data(err):
                    raise
                await self._isolate(half, err)

    def _reject(self, record: rec.Record, exc: BaseException) -> None:
        self.rejected += 1
        log.error("recording: the database refused a %s record (%s); kept in %s",
                  type(record).__name__, describe(exc), self.rejected_path)
        try:
            self.rejected_path.parent.mkdir(parents=True, exist_ok=True)
            with self.rejected_path.open("ab") as fh:
                fh.write(encode_record(record) + b"\n")
        except OSError as err:
            self.dropped += 1
            log.error("recording: cannot keep the refused record: %s", err)

    async def _drain_journal(self) -> bool:
        """Replay the journal's segments into the database, oldest first; True when all are in.

        Said once per catch-up, not per segment: while the database was away, each pass seals
        what arrived meanwhile into a segment of its own."""
        replayed: list[str] = []
        try:
            while True:
                self.flush()
                self.journal.rotate()       # seal what has been journaled so far
                for path in self.journal.sealed():
                    for chunk in self.journal.read(path, self._batch_size):
                        if not await self._write(chunk):
                            return False
                    self.journal.remove(path)
                    replayed.append(path.name)
                if not self._buffer.lines and not self.journal.segments():
                    self._spilled = False   # nothing was journaled meanwhile: memory takes over again
                    return True
        finally:
            if replayed:
                log.info("recording: replayed the journal segment%s %s into the database",
                         "s" if len(replayed) > 1 else "", ", ".join(replayed))
