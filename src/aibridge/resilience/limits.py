"""Per-user rate limits and a global concurrency limit, as one addon on the flow.

Both checks run when a request is parsed, before anything is recorded or sent upstream; a
refused request gets the provider's own error shape (429 with Retry-After, or 503).

Rate limits count requests per user (all its tokens together: minting more tokens buys no more
requests) in one-second windows. With a Redis URL the count is
shared by every replica (INCR on a per-second key that expires); without one it is counted by
this server (in shared memory when it runs several workers, see ``shared.py``). If Redis is
unreachable the limiter lets requests through and logs it: an outage of the limiter must not
become an outage of the gateway. The concurrency limit is per server (per replica): with
several workers their in-flight counts are shared the same way.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aibridge.bridge.flow import Addon, Flow, FlowKey, Reject

log = logging.getLogger("aibridge.limits")
REDIS_TIMEOUT = 0.25
SLOT: FlowKey[bool] = FlowKey("limits.slot")     # the flow holds one of the concurrency slots


class Slots(Protocol):
    """In-flight intercepted requests of this server (one process, or every worker's: ``shared.py``)."""

    def take(self, limit: int) -> bool: ...

    def give_back(self) -> None: ...


class LocalSlots:
    def __init__(self) -> None:
        self.inflight = 0

    def take(self, limit: int) -> bool:
        if self.inflight >= limit:
            return False
        self.inflight += 1
        return True

    def give_back(self) -> None:
        self.inflight -= 1


class WindowCounter(Protocol):
    async def hit(self, key: str, window: int) -> int:
        """Count one request for ``key`` in the one-second ``window``; the count so far."""

    async def close(self) -> None: ...


class LocalCounter:
    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, int]] = {}

    async def hit(self, key: str, window: int) -> int:
        start, count = self._windows.get(key, (window, 0))
        count = count + 1 if start == window else 1
        self._windows[key] = (window, count)
        if len(self._windows) > 100_000:        # forget idle users
            self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
        return count

    async def close(self) -> None:
        pass


class RedisCounter:
    def __init__(self, url: str) -> None:
        self._redis = Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
        self._warned_at = 0.0

    async def hit(self, key: str, window: int) -> int:
        name = f"aibridge:rate:{key}:{window}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, 2)
                count, _ = await pipe.execute()
            return int(count)
        except (RedisError, OSError) as exc:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("rate limiter cannot reach Redis (%s); letting requests through", exc)
            return 0

    async def close(self) -> None:
        await self._redis.aclose()


class LimitsAddon(Addon):
    """Must come before every other addon: a refused request is neither recorded nor sent upstream."""

    def __init__(self, max_concurrency: int = 0, rate_limit: float = 0,
                 counter: WindowCounter | None = None, slots: Slots | None = None) -> None:
        self.max_concurrency = max_concurrency
        self.rate_limit = rate_limit
        self.counter = counter or LocalCounter()
        self.slots = slots or LocalSlots()

    async def close(self) -> None:
        await self.counter.close()

    async def admit(self, flow: Flow) -> None:
        """Raise Reject when the request may not go ahead (called by the flow before request_parsed)."""
        if self.rate_limit > 0:
            count = await self.counter.hit(str(flow.actor.id), int(time.time()))
            if count > self.rate_limit:
                raise Reject(429, f"rate limit exceeded: at most {self.rate_limit:g} requests per second per user",
                             {"Retry-After": "1"}, reason="rate_limit")
        if self.max_concurrency > 0:
            if not self.slots.take(self.max_concurrency):
                raise Reject(503, f"AI Bridge is at its concurrency limit ({self.max_concurrency}); retry shortly",
                             {"Retry-After": "1"}, reason="concurrency")
            flow.put(SLOT, True)

    def refused(self, flow: Flow) -> None:
        self._release(flow)       # a later guard refused a flow this one had admitted

    def interception_ended(self, flow: Flow) -> None:
        self._release(flow)

    def passthrough(self, flow: Flow) -> None:
        self._release(flow)       # a passed-through request holds a slot too, until it is answered

    def _release(self, flow: Flow) -> None:
        if flow.pop(SLOT) is not None:
            self.slots.give_back()
