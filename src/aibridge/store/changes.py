"""Change generations: how every worker and replica learns at once that cached state changed.

DESIGN §2.6: revoking a token, suspending or deleting a user and changing a governance rule take
effect on every worker of the server before the call that made the change returns, and on every
replica within 1 s. The workers cache validated tokens (``identity/auth.py``), the governance
rules (``governance/rules.py``) and the providers built from the API's rows (``bridge/live.py``)
so the bridge's hot path does not read the database; this module
tells them when to drop those caches.

- Each kind of cached state (``AUTH``, ``GOVERNANCE``, ``PROVIDERS``) has a generation in
  ``aibridge_generations``; ``bump`` raises it in the transaction of every change. A change path
  that does not call ``bump`` is not seen by the other workers and replicas until a cache expires.
- The workers of a server share ``Generations``: one int64 cell per kind, in memory the
  supervisor maps before it forks them. A cache remembers the generation it was filled at and
  compares it with the cell on each use (a shared-memory read, no lock, no await).
- The REST call that made a change calls ``Changes.publish`` before it returns: it reads the
  generations (now at least the one its change committed) into the cells, so the next request
  on any worker of this server sees them.
- One ``Changes`` per server listens for the changes made elsewhere (other replicas, the CLI,
  which writes the database directly): on PostgreSQL ``bump`` sends ``NOTIFY aibridge_changes``,
  delivered when its transaction commits, and the listener also re-reads the row every few
  seconds in case a notification was lost with its connection; on SQLite (no replicas, but CLI
  writers) it reads the row every 0.25 s. Redis pub/sub was the other candidate: Redis is
  optional and the CLI does not know about it, while the database sees every change.

The cells only move up, to generations some transaction committed: a cell at ``g`` was set after
the change numbered ``g`` committed, so a cache refilled after seeing ``g`` holds every change up
to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Iterator, Mapping

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from aibridge.store.schema import generations

log = logging.getLogger("aibridge.changes")
AUTH, GOVERNANCE, PROVIDERS = "auth", "governance", "providers"
KINDS = (AUTH, GOVERNANCE, PROVIDERS)
CHANNEL = "aibridge_changes"
SQLITE_POLL = 0.25          # seconds: well within the 1 s a CLI change may take to apply
POSTGRES_RECHECK = 5.0      # seconds between reads of the row while listening (lost notifications)
RETRY = 1.0
_CTX = multiprocessing.get_context("fork")


async def bump(conn: AsyncConnection, kind: str) -> None:
    """Call in the transaction that changes state of ``kind``: every server drops its caches of it."""
    column = generations.c.generation
    new = (await conn.execute(generations.update().where(generations.c.kind == kind)
                              .values(generation=column + 1).returning(column))).scalar_one()
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_notify(CHANNEL, f"{kind}:{new}")))


async def read(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {row.kind: int(row.generation) for row in await conn.execute(generations.select())}


class Generations:
    """The newest generation of each kind this server knows, shared by its workers (fork).

    Readers on the hot path keep a cell and read its ``.value`` (about 70 ns, no lock: an aligned
    64-bit load); only ``advance`` takes the lock.
    """

    def __init__(self) -> None:
        self.auth: ctypes.c_longlong = _CTX.RawValue(ctypes.c_longlong)
        self.governance: ctypes.c_longlong = _CTX.RawValue(ctypes.c_longlong)
        self.providers: ctypes.c_longlong = _CTX.RawValue(ctypes.c_longlong)
        self._cells = {AUTH: self.auth, GOVERNANCE: self.governance, PROVIDERS: self.providers}
        # lockf on an unlinked file (as resilience/shared.py): released by the kernel if its holder dies
        fd, path = tempfile.mkstemp(prefix="aibridge-generations-")
        os.unlink(path)
        self._lock_fd = fd

    def advance(self, seen: Mapping[str, int]) -> None:
        """Raise the cells to ``seen`` (generations read from the database or a notification)."""
        with self._held():
            for kind, cell in self._cells.items():
                value = seen.get(kind)
                if value is not None and value > cell.value:
                    cell.value = value

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        fcntl.lockf(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN)


class Changes:
    """One process's part: publish after its own changes; ``listen``: bring other processes' changes."""

    def __init__(self, engine: AsyncEngine, shared: Generations | None = None, listen: bool = True) -> None:
        self.engine = engine
        self.generations = shared or Generations()
        self._listen = listen
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def publish(self) -> None:
        """After a change committed: every worker of this server sees it on its next request.

        The change is saved either way: if the database stops answering right after it, the
        listener brings it once the database is back (the call that made it must not fail)."""
        try:
            self.generations.advance(await read(self.engine))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("a change was saved but could not be announced to this server's workers (%s); "
                        "they apply it once the database answers again", type(exc).__name__)

    async def start(self) -> None:
        if self._listen:
            self._task = asyncio.create_task(self._run(), name="aibridge-changes")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                if self.engine.dialect.name == "postgresql":
                    await self._listen_postgres()
                else:
                    await self._poll()
            except Exception as exc:        # the database is away: keep trying, say it once
                if not self._failing:
                    log.warning("cannot follow changes made by other replicas or the CLI (%s: %s); retrying",
                                type(exc).__name__, exc)
                    self._failing = True
            await asyncio.sleep(RETRY)

    async def _poll(self) -> None:
        while True:
            self._seen(await read(self.engine))
            await asyncio.sleep(SQLITE_POLL)

    async def _listen_postgres(self) -> None:
        import asyncpg  # the PostgreSQL driver; SQLite deployments never load it here

        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.add_listener(CHANNEL, self._notified)
            while not conn.is_closed():        # first: what changed while nobody listened
                rows = await conn.fetch("SELECT kind, generation FROM aibridge_generations", timeout=10)
                self._seen({row["kind"]: int(row["generation"]) for row in rows})
                await asyncio.sleep(POSTGRES_RECHECK)
        finally:
            await conn.close(timeout=5)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        kind, _, value = payload.partition(":")
        with contextlib.suppress(ValueError):
            self.generations.advance({kind: int(value)})

    def _seen(self, seen: Mapping[str, int]) -> None:
        if self._failing:
            log.warning("following changes made by other replicas and the CLI again")
            self._failing = False
        self.generations.advance(seen)
