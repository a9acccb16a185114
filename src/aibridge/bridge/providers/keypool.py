"""Several API keys for one HTTP provider (``CODER_AIBRIDGE_OPENAI_KEY=sk-a,sk-b``).

A key the upstream answers 429 (rate limited) or 401 (refused) cools down: for the answer's
``Retry-After`` (seconds or an HTTP date), else ``RATE_LIMIT_COOLDOWN`` / ``AUTH_COOLDOWN``, and
the same request is sent again with the next key, before anything reached the client. Keys are
taken in turn, so the load spreads. When every key is cooling the provider answers 429 with the
shortest ``Retry-After`` itself; when every key was refused, 502. One key behaves as before the
pool existed: every request goes upstream and its answer is relayed as it is.

``hint(i)`` names a key in metrics and logs without revealing it: the first 8 hex digits of its
SHA-256, stable across restarts and replicas.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, Metric

from aibridge.bridge.scrape import METRIC_PREFIX

log = logging.getLogger("aibridge.keypool")

RATE_LIMIT_COOLDOWN = 30.0      # seconds, when a 429 names no Retry-After
AUTH_COOLDOWN = 300.0           # a refused key is retried after this (it may have been fixed)
MAX_COOLDOWN = 3600.0
COOLING_STATUSES = frozenset({401, 429})


def split_keys(value: str) -> list[str]:
    """``"sk-a, sk-b"`` → ``["sk-a", "sk-b"]`` (blanks dropped, order kept, duplicates once)."""
    return list(dict.fromkeys(k.strip() for k in value.split(",") if k.strip()))


def key_hint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: a number, or an HTTP date; None when absent or unreadable."""
    value = headers.get("Retry-After", headers.get("retry-after", "")).strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class KeyPool:
    def __init__(self, provider: str, keys: list[str], clock: Callable[[], float] = time.monotonic) -> None:
        if not keys:
            raise ValueError("a key pool needs at least one key")
        self.provider = provider
        self.keys = keys
        self.hints = [key_hint(k) for k in keys]
        self._clock = clock
        self._until = [0.0] * len(keys)         # cooling until (clock time)
        self._refused = [False] * len(keys)     # the latest cooldown was a 401
        self._next = 0
        self.cooldowns: Counter[str] = Counter()   # key hint → times it was put on cooldown

    @property
    def pooled(self) -> bool:
        return len(self.keys) > 1

    def order(self) -> list[int]:
        """Keys to try for one request: the ready ones, starting with the next in turn."""
        now = self._clock()
        start = self._next
        self._next = (self._next + 1) % len(self.keys)
        rotated = [(start + i) % len(self.keys) for i in range(len(self.keys))]
        return [i for i in rotated if self._until[i] <= now] if self.pooled else rotated

    def cool(self, index: int, status: int, headers: Mapping[str, str]) -> None:
        """The upstream answered ``status`` (401 or 429) to key ``index``."""
        wait = retry_after_seconds(headers)
        if wait is None:
            wait = AUTH_COOLDOWN if status == 401 else RATE_LIMIT_COOLDOWN
        self._until[index] = self._clock() + min(wait, MAX_COOLDOWN)
        self._refused[index] = status == 401
        self.cooldowns[self.hints[index]] += 1
        log.warning("provider %s: key %s answered %d; cooling down for %.0fs", self.provider,
                    self.hints[index], status, min(wait, MAX_COOLDOWN))

    def retry_after(self) -> int:
        """Whole seconds until the first rate-limited key is ready again (at least 1)."""
        now = self._clock()
        waits = [u - now for u, refused in zip(self._until, self._refused, strict=True) if not refused] or \
            [u - now for u in self._until]
        return max(1, math.ceil(min(waits)))

    def all_refused(self) -> bool:
        """Every key is cooling after a 401: the configuration, not the load, is wrong."""
        now = self._clock()
        return all(refused and until > now for refused, until in zip(self._refused, self._until, strict=True))


class KeyCooldownCollector:
    """``provider_key_cooldowns_total{provider,key_hint}``, read when scraped from the key pools of
    the providers served then (``providers``: they change when providers are managed at runtime)."""

    def __init__(self, providers: Callable[[], Iterable[object]]) -> None:
        self.providers = providers

    def pools(self) -> list[KeyPool]:
        inner = (getattr(p, "inner", p) for p in self.providers())      # seen through Diagnosed
        return [pool for p in inner if isinstance(pool := getattr(p, "keys", None), KeyPool)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(METRIC_PREFIX + "provider_key_cooldowns",
                                     "Times a provider key was put on cooldown after a 429 or 401 from the upstream.",
                                     labels=["provider", "key_hint"])
        for pool in self.pools():
            for hint, count in sorted(pool.cooldowns.items()):
                family.add_metric([pool.provider, hint], count)
        yield family
