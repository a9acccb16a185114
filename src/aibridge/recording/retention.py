"""Retention: interceptions older than ``--aibridge-retention`` are deleted with all their records.

A purge runs at start and every 10 minutes (the SQL is in ``store/retention.py``: batched, and
one replica at a time on PostgreSQL). Retention 0 keeps everything. The same task purges audit log
rows older than ``--audit-logs-retention`` (``store/audit.purge``, batched too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.bridge.flow import Addon
from aibridge.bridge.scrape import METRIC_PREFIX, Collector
from aibridge.store import audit
from aibridge.store.retention import PurgeResult, purge_detailed

log = logging.getLogger("aibridge.retention")

PURGE_INTERVAL = 600.0


class RetentionTask(Addon):
    """Runs ``purge`` now and then every ``interval`` seconds, from server start to stop."""

    def __init__(self, engine: AsyncEngine, retention_seconds: float, audit_seconds: float = 0.0, *,
                 interval: float = PURGE_INTERVAL) -> None:
        self.engine = engine
        self.retention_seconds = retention_seconds
        self.audit_seconds = audit_seconds
        self.interval = interval
        self.purged_total = 0        # interceptions this process deleted (read by the metrics)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.retention_seconds > 0 or self.audit_seconds > 0:
            self._task = asyncio.create_task(self._run(), name="retention")
        if self.retention_seconds <= 0:
            log.info("retention is 0: interception records are kept forever")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def collectors(self) -> list[Collector]:
        return [PurgeCollector(self)]

    async def _run(self) -> None:
        while True:
            if self.retention_seconds > 0:
                await self.run_once()
            await self.purge_audit()
            await asyncio.sleep(self.interval)

    async def purge_audit(self) -> int:
        """Audit rows older than their retention; a failure is logged and retried next round."""
        try:
            deleted = await audit.purge(self.engine, self.audit_seconds)
        except Exception as exc:
            log.warning("audit log purge failed (will retry in %ss): %s", int(self.interval),
                        str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            return 0
        if deleted:
            log.info("retention purge deleted %d audit log rows older than %s", deleted, _days(self.audit_seconds))
        return deleted

    async def run_once(self) -> PurgeResult | None:
        try:
            result = await purge_detailed(self.engine, self.retention_seconds)
        except Exception as exc:     # a database hiccup must not end the periodic task
            log.warning("retention purge failed (will retry in %ss): %s", int(self.interval),
                        str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            return None
        self._report(result)
        return result

    def _report(self, result: PurgeResult) -> None:
        if result.skipped:
            log.debug("retention purge skipped: another replica is purging")
            return
        self.purged_total += result.interceptions
        if result.interceptions:
            log.info("retention purge deleted %d interceptions older than %s", result.interceptions,
                     _days(self.retention_seconds),
                     extra={"purged_interceptions": result.interceptions, **result.children})


class PurgeCollector:
    """``purged_interceptions_total``, read from the retention task when scraped."""

    def __init__(self, retention: RetentionTask) -> None:
        self.retention = retention

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(METRIC_PREFIX + "purged_interceptions",
                                     "Interceptions (with their records) deleted by the retention purge.")
        family.add_metric([], self.retention.purged_total)
        yield family


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g}d" if seconds >= 86400 else f"{seconds:g}s"
