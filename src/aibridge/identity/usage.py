"""When each API token was last used (``api_keys.last_used_at``), kept off the hot path.

Authentication only notes a token id in memory (a dict lookup); a background task writes the
noted stamps a second later in one batched statement. A token is noted at most once per
``INTERVAL`` per worker, so a busy token costs one row update a minute, not one per request. The
stamp is therefore exact to the minute, which is what "last used" is for (finding stale tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.store.users import touch_api_keys

log = logging.getLogger("aibridge.auth")
INTERVAL = 60.0        # seconds between two writes of the same token's stamp (per worker)
FLUSH_DELAY = 1.0      # the writes of this long go out together
_MAX_TRACKED = 100_000


class LastUsed:
    def __init__(self, engine: AsyncEngine, interval: float = INTERVAL, delay: float = FLUSH_DELAY) -> None:
        self._engine = engine
        self._interval = interval
        self._delay = delay
        self._noted: dict[str, float] = {}              # token id → monotonic time it was last noted
        self._pending: dict[str, dt.datetime] = {}      # token id → stamp to write
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def seen(self, token_id: str) -> None:
        """Called for every authenticated request: no await, no I/O."""
        if self._task is None:          # not started (a tool or benchmark without the server)
            return
        now = time.monotonic()
        if now - self._noted.get(token_id, -math.inf) < self._interval:
            return
        if len(self._noted) >= _MAX_TRACKED:
            self._noted.clear()
        self._noted[token_id] = now
        self._pending[token_id] = dt.datetime.now(dt.UTC)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="aibridge-token-last-used")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._delay)
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, {}
        try:
            await touch_api_keys(self._engine, batch)
        except (SQLAlchemyError, OSError) as exc:
            # Only a stamp is lost (the next use after INTERVAL writes it again); never the request.
            log.warning("cannot record when %d API tokens were last used: %s", len(batch), type(exc).__name__)
