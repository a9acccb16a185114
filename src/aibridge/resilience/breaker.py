"""A circuit breaker per (provider, endpoint, model), as an addon on the flow.

Closed: requests flow; failures (upstream 429, 5xx, unreachable) within ``interval`` are
counted, and ``failure_threshold`` of them open the circuit. Open: requests are refused at
once (503 in the provider's shape, with Retry-After) for ``timeout``. Half-open: up to
``max_requests`` trial requests go through; if they all succeed the circuit closes, the first
failure opens it again. A client that hangs up is neither a success nor a failure.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aibridge.bridge.flow import Addon, Flow, Reject

if TYPE_CHECKING:
    from aibridge.observability.metrics import Metrics

CLOSED, HALF_OPEN, OPEN = 0.0, 0.5, 1.0      # also the gauge's values


def is_failure(flow: Flow) -> bool:
    if flow.outcome == "canceled":
        return False
    status = flow.upstream_status
    if status is None:
        return flow.outcome == "error"        # never got an answer: unreachable or timed out
    return status == 429 or status >= 500


@dataclass
class Circuit:
    state: float = CLOSED
    failures: list[float] = field(default_factory=list)
    opened_at: float = 0.0
    trials: int = 0
    trial_successes: int = 0


class CircuitBreakerAddon(Addon):
    def __init__(self, failure_threshold: int, interval: float, timeout: float, max_requests: int,
                 metrics: Metrics | None = None) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.interval = interval
        self.timeout = timeout
        self.max_requests = max(1, max_requests)
        self.metrics = metrics
        self.circuits: dict[tuple[str, str, str], Circuit] = {}
        self._trials: set[int] = set()

    @staticmethod
    def key(flow: Flow) -> tuple[str, str, str]:
        return flow.provider.name, flow.route, flow.model

    def _set_state(self, key: tuple[str, str, str], circuit: Circuit, state: float) -> None:
        circuit.state = state
        if self.metrics is not None:
            self.metrics.breaker_state.labels(*self._labels(key)).set(state)

    def _labels(self, key: tuple[str, str, str]) -> tuple[str, str, str]:
        if self.metrics is None:
            return key
        return key[0], key[1], self.metrics.model_label(key[2])

    async def admit(self, flow: Flow) -> None:
        key = self.key(flow)
        circuit = self.circuits.get(key)
        if circuit is None or circuit.state == CLOSED:
            return
        now = time.monotonic()
        if circuit.state == OPEN and now - circuit.opened_at >= self.timeout:
            self._set_state(key, circuit, HALF_OPEN)
            circuit.trials = circuit.trial_successes = 0
        if circuit.state == HALF_OPEN and circuit.trials < self.max_requests:
            circuit.trials += 1
            self._trials.add(id(flow))
            return
        if self.metrics is not None:
            self.metrics.breaker_rejects.labels(*self._labels(key)).inc()
        wait = max(1, math.ceil(self.timeout - (now - circuit.opened_at)))
        raise Reject(503, f"upstream {flow.provider.name} is failing; AI Bridge stopped calling it for "
                          f"{self.timeout:g}s (circuit breaker open)", {"Retry-After": str(wait)})

    def interception_ended(self, flow: Flow) -> None:
        if flow.outcome == "rejected":
            self._trials.discard(id(flow))
            return
        key = self.key(flow)
        circuit = self.circuits.setdefault(key, Circuit())
        trial = id(flow) in self._trials
        self._trials.discard(id(flow))
        now = time.monotonic()
        if is_failure(flow):
            if circuit.state == HALF_OPEN or self._count_failure(circuit, now):
                self._open(key, circuit, now)
        elif trial and circuit.state == HALF_OPEN:
            circuit.trial_successes += 1
            if circuit.trial_successes >= self.max_requests:
                circuit.failures.clear()
                self._set_state(key, circuit, CLOSED)

    def _count_failure(self, circuit: Circuit, now: float) -> bool:
        circuit.failures = [t for t in circuit.failures if now - t < self.interval]
        circuit.failures.append(now)
        return circuit.state == CLOSED and len(circuit.failures) >= self.failure_threshold

    def _open(self, key: tuple[str, str, str], circuit: Circuit, now: float) -> None:
        circuit.opened_at = now
        circuit.failures.clear()
        self._set_state(key, circuit, OPEN)
        if self.metrics is not None:
            self.metrics.breaker_trips.labels(*self._labels(key)).inc()
