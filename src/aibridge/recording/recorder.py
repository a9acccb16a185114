"""The background writer: records are accepted instantly and written in batches.

Accepting never blocks the request path. A writer task takes everything pending (up to
``batch_size``) and writes it in one transaction. When the database fails, the batch is
appended to a local journal (JSON lines in the data directory) and every later batch follows it
there, so order is kept; the journal is replayed, in order, as soon as the database answers
again, and at the next start if the process stopped first. Inserts are idempotent, so a batch
replayed after a partial failure does not duplicate rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.store import records as rec
from aibridge.store.writer import BatchWriter

log = logging.getLogger("aibridge.recorder")

_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    rec.InterceptionStart, rec.InterceptionEnd, rec.TokenUsageRecord, rec.PromptRecord,
    rec.ToolUsageRecord, rec.ThoughtRecord)}
_UUID_FIELDS = ("id", "initiator_id", "interception_id")
_TIME_FIELDS = ("started_at", "ended_at", "created_at")


def encode_record(record: rec.Record) -> bytes:
    return orjson.dumps({"type": type(record).__name__, "record": record})


def decode_record(line: bytes) -> rec.Record:
    doc = orjson.loads(line)
    fields: dict[str, Any] = doc["record"]
    for name in _UUID_FIELDS:
        if name in fields:
            fields[name] = uuid.UUID(fields[name])
    for name in _TIME_FIELDS:
        if fields.get(name):
            fields[name] = dt.datetime.fromisoformat(fields[name])
    record: rec.Record = _TYPES[doc["type"]](**fields)
    return record


class Journal:
    """Append-only JSON lines on local disk, for batches the database did not take."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __bool__(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def append(self, batch: list[rec.Record]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            fh.write(b"".join(encode_record(r) + b"\n" for r in batch))
            fh.flush()

    def read(self) -> list[rec.Record]:
        if not self:
            return []
        return [decode_record(line) for line in self.path.read_bytes().splitlines() if line.strip()]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class Recorder:
    def __init__(self, engine: AsyncEngine, journal_path: Path, *, batch_size: int = 500,
                 linger: float = 0.05, retry_interval: float = 1.0) -> None:
        self._writer = BatchWriter(engine)
        self.journal = Journal(journal_path)
        self._batch_size = batch_size
        self._linger = linger
        self._retry_interval = retry_interval
        self._pending: list[rec.Record] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failures = 0

    def submit(self, record: rec.Record) -> None:
        self._pending.append(record)
        if len(self._pending) == 1 or len(self._pending) >= self._batch_size:
            self._wakeup.set()

    async def start(self) -> None:
        if self.journal:
            await self._replay_journal()
        self._task = asyncio.create_task(self._run(), name="recorder")

    async def close(self) -> None:
        """Write everything pending; what the database will not take stays in the journal."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._writer.close()

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._retry_interval if self.journal else None)
                if self.journal and not self._pending:
                    await self._replay_journal()
                continue
            if self._linger and not self._closing and len(self._pending) < self._batch_size:
                await asyncio.sleep(self._linger)    # let a burst gather into one transaction
            batch, self._pending = self._pending[:self._batch_size], self._pending[self._batch_size:]
            await self._write(batch)

    async def _write(self, batch: list[rec.Record]) -> None:
        if self.journal and not await self._replay_journal():
            self.journal.append(batch)      # keep order behind what is already waiting
            return
        try:
            await self._writer.write(batch)
            self.written += len(batch)
        except Exception as exc:
            self.failures += 1
            log.warning("database write failed (%s); %d records kept in the journal %s",
                        _short(exc), len(batch), self.journal.path)
            self.journal.append(batch)

    async def _replay_journal(self) -> bool:
        try:
            batch = self.journal.read()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad = self.journal.path.with_suffix(".corrupt")
            log.error("journal %s is unreadable (%s); moved to %s", self.journal.path, exc, bad)
            self.journal.path.rename(bad)
            return True
        try:
            for start in range(0, len(batch), self._batch_size):
                await self._writer.write(batch[start:start + self._batch_size])
        except Exception as exc:
            log.debug("journal replay postponed: %s", _short(exc))
            return False
        self.journal.clear()
        self.written += len(batch)
        log.info("replayed %d journaled records into the database", len(batch))
        return True


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


