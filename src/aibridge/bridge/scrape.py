"""What an addon needs to show its own state as Prometheus metrics (its ``collectors()`` hook).

An addon that owns state worth scraping (circuits, purge counts, …) returns collectors that read
it when scraped; the metrics register whatever the addons return. The names share one prefix,
and a label a client chooses (a model) is bounded so a client cannot blow up the series.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client.core import Metric

METRIC_PREFIX = "coder_aibridged_"
OTHER = "other"


class Collector(Protocol):
    """What a Prometheus registry reads when scraped (prometheus_client's custom collectors)."""

    def collect(self) -> Iterable[Metric]: ...


class BoundedLabel:
    """Caps the distinct values a client-chosen label takes in this process; the rest are "other"."""

    def __init__(self, limit: int, max_length: int = 128) -> None:
        self.limit = limit
        self.max_length = max_length
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        value = value[:self.max_length] or "unknown"
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(value)
        return value
