"""Counters shared by the worker processes of one server (``--workers N``), in shared memory.

The supervisor creates them before it forks the workers, so every worker maps the same memory.
A POSIX record lock (``fcntl.lockf``) on a temp file guards each update: the kernel releases it
when its holder dies, so a worker killed in the middle of an update never wedges the others.
Each operation is a few microseconds (two uncontended lock calls and some ctypes reads).

- ``SharedSlots``: the concurrency limit per server. Each worker counts its own in-flight
  requests in its own cell and admits one only while the sum of all cells is under the limit;
  when a worker dies, the supervisor zeroes its cell, so slots held by the dead are not leaked.
- ``SharedWindowCounter``: per-user request counts in one-second windows (the rate limit when
  no Redis is configured), in a fixed open-addressing table. Entries of past windows are reused;
  a table full of current-window entries lets the request through (counted as 0), like the
  Redis counter does when Redis cannot answer.
- ``CircuitTable``: the circuit breaker's circuits (``breaker.py``), in a fixed open-addressing
  table keyed by a hash of (provider, endpoint, model), with the number of circuits not closed.
  Reading takes no lock (while every circuit is closed, the common case, a request reads that
  one number); changing a circuit does.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import logging
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

log = logging.getLogger("aibridge.limits")
_CTX = multiprocessing.get_context("fork")


def stable_hash(key: str) -> int:
    """The same in every process (``hash()`` is not across restarts); never 0, which marks a free entry."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little", signed=True) or 1


class ProcessLock:
    """An exclusive lock between processes that dies with its holder (lockf on an unlinked temp file)."""

    def __init__(self) -> None:
        fd, path = tempfile.mkstemp(prefix="aibridge-lock-")
        os.unlink(path)              # the inherited descriptor is all the workers need
        self._fd = fd

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)


class SharedSlots:
    """In-flight requests of every worker; ``slot`` is this process's cell (set in each worker)."""

    def __init__(self, workers: int) -> None:
        self._lock = ProcessLock()
        self._cells: Any = _CTX.RawArray("q", workers)
        self.slot = 0

    def take(self, limit: int) -> bool:
        with self._lock.held():
            if sum(self._cells) >= limit:
                return False
            self._cells[self.slot] += 1
            return True

    def give_back(self) -> None:
        with self._lock.held():
            self._cells[self.slot] -= 1

    def total(self) -> int:
        return int(sum(self._cells))

    def forget(self, slot: int) -> None:
        """A worker died: what it held is free again (called by the supervisor)."""
        with self._lock.held():
            self._cells[slot] = 0


class SharedWindowCounter:
    """A ``WindowCounter`` (see ``limits.py``) whose counts every worker of this server shares."""

    SIZE = 16_384         # distinct users counted within one second
    PROBES = 32

    def __init__(self) -> None:
        self._lock = ProcessLock()
        self._keys: Any = _CTX.RawArray("q", self.SIZE)
        self._windows: Any = _CTX.RawArray("q", self.SIZE)
        self._counts: Any = _CTX.RawArray("q", self.SIZE)
        self._warned_at = 0.0

    @staticmethod
    def _hash(key: str) -> int:
        return stable_hash(key)

    async def hit(self, key: str, window: int) -> int:
        h = self._hash(key)
        start = h % self.SIZE
        keys, windows, counts = self._keys, self._windows, self._counts
        with self._lock.held():
            free = -1
            for probe in range(self.PROBES):
                i = (start + probe) % self.SIZE
                if keys[i] == h:
                    counts[i] = counts[i] + 1 if windows[i] == window else 1
                    windows[i] = window
                    return int(counts[i])
                if free < 0 and windows[i] != window:
                    free = i         # empty, or left from a past window
            if free >= 0:
                keys[free], windows[free], counts[free] = h, window, 1
                return 1
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("rate limiter table is full for this second; letting requests through")
        return 0

    async def close(self) -> None:
        pass


class Circuit(ctypes.Structure):
    """One circuit's state (``breaker.py`` says what the fields mean)."""

    _fields_ = [("key", ctypes.c_int64), ("state", ctypes.c_double), ("since", ctypes.c_double),
                ("failures", ctypes.c_int64), ("window_start", ctypes.c_double),
                ("trials", ctypes.c_int64), ("successes", ctypes.c_int64)]
    key: int              # the hash of (provider, endpoint, model); 0: a free entry
    state: float          # closed, half-open or open (breaker.py)
    since: float          # monotonic time it opened or half-opened
    failures: int         # counted in the window that started at window_start
    window_start: float
    trials: int           # half-open trials in flight or answered
    successes: int        # half-open trials that succeeded


class CircuitTable:
    """The circuits of this server: one process's, or shared by every worker (``shared=True``)."""

    SIZE = 4096           # distinct (provider, endpoint, model) with recent failures
    PROBES = 32

    def __init__(self, shared: bool = True) -> None:
        self._lock = ProcessLock() if shared else None
        self._cells: Any = _CTX.RawArray(Circuit, self.SIZE)
        self._not_closed: Any = _CTX.RawValue("q", 0)

    @property
    def all_closed(self) -> bool:
        return bool(self._not_closed.value <= 0)

    def set_state(self, circuit: Circuit, state: float, closed: float) -> None:
        """Change a circuit's state, counting the circuits not ``closed`` (hold the lock)."""
        if (circuit.state == closed) != (state == closed):
            self._not_closed.value += 1 if state != closed else -1
        circuit.state = state

    def locked(self) -> AbstractContextManager[None]:
        return self._lock.held() if self._lock is not None else nullcontext()

    def find(self, key: int) -> Circuit | None:
        start = key % self.SIZE
        for probe in range(self.PROBES):
            cell: Circuit = self._cells[(start + probe) % self.SIZE]
            if cell.key == key:
                return cell
            if cell.key == 0:
                return None
        return None

    def claim(self, key: int, reusable: Callable[[Circuit], bool]) -> Circuit | None:
        """The circuit of ``key``, made if needed in a free entry or one ``reusable`` lets go (hold the lock)."""
        found = self.find(key)
        if found is not None:
            return found
        start = key % self.SIZE
        for probe in range(self.PROBES):
            cell: Circuit = self._cells[(start + probe) % self.SIZE]
            if cell.key == 0 or reusable(cell):
                ctypes.memset(ctypes.addressof(cell), 0, ctypes.sizeof(Circuit))
                cell.key = key
                return cell
        return None
