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
from collections.abc import Iterator
from dataclasses import dataclass, field

from aibridge.bridge.flow import Addon, Flow, FlowKey, Reject

CLOSED, HALF_OPEN, OPEN = 0.0, 0.5, 1.0      # also the metrics gauge's values
TRIAL: FlowKey[bool] = FlowKey("breaker.trial")    # this flow is one of a half-open circuit's trials


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
    trips: int = 0               # times it opened, for the metrics


class CircuitBreakerAddon(Addon):
    def __init__(self, failure_threshold: int, interval: float, timeout: float, max_requests: int) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.interval = interval
        self.timeout = timeout
        self.max_requests = max(1, max_requests)
        self.circuits: dict[tuple[str, str, str], Circuit] = {}

    @staticmethod
    def key(flow: Flow) -> tuple[str, str, str]:
        return flow.provider.name, flow.route, flow.model

    def snapshot(self) -> Iterator[tuple[tuple[str, str, str], Circuit]]:
        """Every circuit with its (provider, endpoint, model), read by the metrics when scraped."""
        return iter(list(self.circuits.items()))

    async def admit(self, flow: Flow) -> None:
        if flow.passed_through:
            return      # circuits are per intercepted endpoint and model; a model list trips none
        circuit = self.circuits.get(self.key(flow))
        if circuit is None or circuit.state == CLOSED:
            return
        now = time.monotonic()
        if circuit.state == OPEN and now - circuit.opened_at >= self.timeout:
            circuit.state = HALF_OPEN
            circuit.trials = circuit.trial_successes = 0
        if circuit.state == HALF_OPEN and circuit.trials < self.max_requests:
            circuit.trials += 1
            flow.put(TRIAL, True)
            return
        wait = max(1, math.ceil(self.timeout - (now - circuit.opened_at)))
        raise Reject(503, f"upstream {flow.provider.name} is failing; AI Bridge stopped calling it for "
                          f"{self.timeout:g}s (circuit breaker open)", {"Retry-After": str(wait)},
                     reason="circuit_open")

    def refused(self, flow: Flow) -> None:
        flow.pop(TRIAL)       # a later guard refused it: the trial never ran

    def interception_ended(self, flow: Flow) -> None:
        circuit = self.circuits.setdefault(self.key(flow), Circuit())
        trial = flow.pop(TRIAL) is not None
        now = time.monotonic()
        if is_failure(flow):
            if circuit.state == HALF_OPEN or self._count_failure(circuit, now):
                self._open(circuit, now)
        elif trial and circuit.state == HALF_OPEN:
            circuit.trial_successes += 1
            if circuit.trial_successes >= self.max_requests:
                circuit.failures.clear()
                circuit.state = CLOSED

    def _count_failure(self, circuit: Circuit, now: float) -> bool:
        circuit.failures = [t for t in circuit.failures if now - t < self.interval]
        circuit.failures.append(now)
        return circuit.state == CLOSED and len(circuit.failures) >= self.failure_threshold

    @staticmethod
    def _open(circuit: Circuit, now: float) -> None:
        circuit.opened_at = now
        circuit.failures.clear()
        circuit.state = OPEN
        circuit.trips += 1
