"""The recording journal: append-only JSON lines on local disk, in numbered segments.

Every record goes to the journal before the database (see ``recorder.py``); a segment is
deleted (or the current one truncated) once everything in it is in the database. A new
segment is started at every start and after a failed append, so a line torn by a crash or a
full disk is never continued by the next one: reading skips it (it is copied to
``records.corrupt``, appended, never overwritten) and keeps every other line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from aibridge.store import records as rec

log = logging.getLogger("aibridge.recorder")

_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    rec.InterceptionStart, rec.InterceptionEnd, rec.TokenUsageRecord, rec.PromptRecord,
    rec.ToolUsageRecord, rec.ThoughtRecord, rec.OwnedObjectRecord)}
# The UUID fields of each record type (an owned object's id is the upstream's string).
_UUID_FIELDS = {name: tuple(f.name for f in dataclasses.fields(cls) if str(f.type).startswith("uuid.UUID"))
                for name, cls in _TYPES.items()}
_TIME_FIELDS = ("started_at", "ended_at", "created_at")
_SEGMENT = re.compile(r"^records(?:\.(\d+))?\.jsonl$")      # records.jsonl: an older version's journal


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):        # subclasses too (asyncpg's UUID), which orjson refuses
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_record(record: rec.Record) -> bytes:
    """One journal line (no newline). Raises TypeError on values JSON cannot hold (lone surrogates)."""
    return orjson.dumps({"type": type(record).__name__, "record": record}, default=_default)


def decode_record(line: bytes) -> rec.Record:
    doc = orjson.loads(line)
    fields: dict[str, Any] = doc["record"]
    for name in _UUID_FIELDS[doc["type"]]:
        if fields.get(name):
            fields[name] = uuid.UUID(fields[name])
    for name in _TIME_FIELDS:
        if fields.get(name):
            fields[name] = dt.datetime.fromisoformat(fields[name])
    record: rec.Record = _TYPES[doc["type"]](**fields)
    return record


class Journal:
    """Numbered segments ``records.<n>.jsonl`` in one directory; the newest is appended to."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.corrupt_path = directory / "records.corrupt"
        self._fd: int | None = None
        self._seq = 0
        self.size = 0                   # bytes in the current segment

    def _number(self, path: Path) -> int:
        match = _SEGMENT.match(path.name)
        return int(match.group(1)) if match and match.group(1) else -1

    def segments(self) -> list[Path]:
        """Every segment on disk, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if _SEGMENT.match(p.name)]
        return sorted(found, key=self._number)

    @property
    def current(self) -> Path | None:
        return self._path(self._seq) if self._fd is not None else None

    @property
    def current_seq(self) -> int | None:
        return self._seq if self._fd is not None else None

    def _path(self, seq: int) -> Path:
        return self.directory / f"records.{seq:010d}.jsonl"

    def sealed(self) -> list[Path]:
        """Segments nobody appends to any more, oldest first."""
        current = self.current
        return [p for p in self.segments() if p != current]

    def bytes_on_disk(self) -> int:
        total = 0
        for path in self.segments():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def _open(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = [self._number(p) for p in self.segments()]
        self._seq = max([self._seq, *existing]) + 1
        self._fd = os.open(self._path(self._seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.size = 0
        return self._seq

    def append(self, data: bytes) -> int:
        """Write ``data`` (whole lines) at the end of the current segment; returns its number.

        Once ``os.write`` returns, the lines survive the process being killed (they are in the
        kernel); ``sync`` makes them survive the machine. On failure the segment is sealed, so a
        torn line is never followed by a good one on the same line.
        """
        if self._fd is None:
            self._open()
        assert self._fd is not None
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(28, f"short write to the journal ({written} of {len(data)} bytes)")
        except OSError:
            empty = self.size == 0
            self.rotate()
            if empty:           # do not leave an empty segment per failed attempt
                with contextlib.suppress(OSError):
                    self._path(self._seq).unlink()
            raise
        self.size += written
        return self._seq

    def rotate(self) -> None:
        """Seal the current segment; the next append starts a new one."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def truncate_current(self) -> None:
        if self._fd is not None and self.size:
            os.ftruncate(self._fd, 0)
            self.size = 0

    def sync_handle(self) -> int | None:
        """A duplicate of the current segment's descriptor, for an fsync in another thread."""
        return os.dup(self._fd) if self._fd is not None and self.size else None

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def read(self, path: Path, chunk: int) -> Iterator[list[rec.Record]]:
        """The segment's records in chunks; lines that cannot be read are set aside, not fatal."""
        records: list[rec.Record] = []
        bad = 0
        with path.open("rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    records.append(decode_record(line))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    bad += 1
                    self._set_aside(path, line, exc)
                if len(records) >= chunk:
                    yield records
                    records = []
        if records:
            yield records
        if bad:
            log.error("journal %s: %d unreadable line(s) skipped (torn by a crash?), kept in %s",
                      path, bad, self.corrupt_path)

    def _set_aside(self, path: Path, line: bytes, exc: BaseException) -> None:
        note = orjson.dumps({"segment": path.name, "error": str(exc)[:200],
                             "at": dt.datetime.now(dt.UTC).isoformat()})
        try:
            with self.corrupt_path.open("ab") as fh:
                fh.write(b"# " + note + b"\n" + line.rstrip(b"\n") + b"\n")
        except OSError as err:
            log.error("cannot keep an unreadable journal line in %s: %s", self.corrupt_path, err)

    def close(self) -> None:
        self.rotate()
