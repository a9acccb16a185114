"""This server process as a replica: a heartbeat, and closing what dead replicas left open.

An interception whose process was killed (``kill -9``, OOM, power) never gets its end record.
At start (after the journal's replay, which may still end some) and at every heartbeat, the
open interceptions that no live replica runs are closed with outcome ``interrupted``; the rule
for "live" is in ``store/replicas.py``. Several replicas on one PostgreSQL each sweep; the
update only touches rows still open, so two sweeps agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.store import replicas
from aibridge.store.users import now

log = logging.getLogger("aibridge.recorder")


class Replica:
    def __init__(self, engine: AsyncEngine, *, interval: float = 10.0, dead_after: float = 120.0) -> None:
        self.engine = engine
        self.me = replicas.Me.here()
        self.interval = interval
        self.dead_after = dt.timedelta(seconds=dead_after)
        self.started_at = now()
        self.interrupted = 0            # interceptions this replica closed as interrupted
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return str(self.me.id)

    async def start(self) -> None:
        await self._beat()
        self._task = asyncio.create_task(self._run(), name="replica-heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await replicas.leave(self.engine, self.me)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._beat()

    async def _beat(self) -> None:
        """Heartbeat, then sweep; a database that does not answer is tried again next time."""
        try:
            await replicas.heartbeat(self.engine, self.me, self.started_at)
            closed = await replicas.close_interrupted(self.engine, self.me, self.dead_after)
        except Exception as exc:
            log.debug("replica heartbeat failed (retried in %ss): %s", self.interval, exc)
            return
        if closed:
            self.interrupted += closed
            log.warning("closed %d interception(s) left open by a server that stopped (outcome: interrupted)",
                        closed)
