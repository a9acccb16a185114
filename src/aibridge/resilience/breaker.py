"""A circuit breaker per (provider, endpoint, model), as an addon on the flow.

Closed: requests flow; failures (upstream 429, 5xx, unreachable; not a 429 to a user's own key,
BYOK) are counted in windows of ``interval``, and ``failure_threshold`` of them in one window
open the circuit. Open: requests are refused at once (503 in the provider's shape, with
Retry-After) for ``timeout``. Half-open:
up to ``max_requests`` trial requests go through; if they all succeed the circuit closes, the
first failure opens it again. A client that hangs up is neither a success nor a failure: its
trial, like one a later guard refused, gives its place back. A half-open circuit whose trials
have not all answered within ``timeout`` (their worker died) lets new ones through.

The circuits live in a ``CircuitTable`` (``shared.py``): with ``--workers N`` every worker reads
and changes the same circuits, so failures seen by one open the circuit for all of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from aibridge.bridge.flow import Addon, Flow, FlowKey, Reject
from aibridge.bridge.scrape import METRIC_PREFIX, BoundedLabel, Collector
from aibridge.resilience.shared import Circuit, CircuitTable, stable_hash

log = logging.getLogger("aibridge.breaker")
CLOSED, HALF_OPEN, OPEN = 0.0, 0.5, 1.0      # also the metrics gauge's values
TRIAL: FlowKey[bool] = FlowKey("breaker.trial")    # this flow is one of a half-open circuit's trials
MAX_NAMED = 1000          # circuits this process names in its metrics
Key = tuple[str, str, str]
PASS, AS_TRIAL = 0, -1      # what _admit answers besides the seconds to wait


def is_failure(flow: Flow) -> bool:
    if flow.outcome == "canceled":
        return False
    status = flow.upstream_status
    if status is None:
        return flow.outcome == "error"        # never got an answer: unreachable or timed out
    # A 429 to a user's own key (BYOK) is that key's limit, not the upstream's: it must not refuse others.
    return (status == 429 and not flow.credential.byok) or status >= 500


class CircuitBreakerAddon(Addon):
    def __init__(self, failure_threshold: int, interval: float, timeout: float, max_requests: int,
                 table: CircuitTable | None = None) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.interval = interval
        self.timeout = timeout
        self.max_requests = max(1, max_requests)
        self.table = table if table is not None else CircuitTable(shared=False)
        self.names: dict[int, Key] = {}      # circuits this process saw fail or refuse, for the metrics
        self.trips: dict[Key, int] = {}      # times this process opened each (the workers' are summed)
        self._hashes: dict[Key, int] = {}
        self._warned_at = 0.0

    @staticmethod
    def key(flow: Flow) -> Key:
        return flow.provider.name, flow.route, flow.model

    def _hash(self, key: Key) -> int:
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= MAX_NAMED:
                self._hashes.clear()
            h = self._hashes[key] = stable_hash("\0".join(key))
        return h

    def _name(self, h: int, key: Key) -> None:
        if len(self.names) < MAX_NAMED:
            self.names.setdefault(h, key)

    async def admit(self, flow: Flow) -> None:
        if flow.passed_through:
            return      # circuits are per intercepted endpoint and model; a model list trips none
        if self.table.all_closed:         # read without the lock: the common case
            return
        key = self.key(flow)
        h = self._hash(key)
        circuit = self.table.find(h)
        if circuit is None or circuit.state == CLOSED:
            return
        self._name(h, key)
        now = time.monotonic()
        with self.table.locked():
            wait = self._admit(circuit, h, now)
        if wait == PASS:
            return
        if wait == AS_TRIAL:
            flow.put(TRIAL, True)
            return
        raise Reject(503, f"upstream {flow.provider.name} is failing; AI Bridge stopped calling it for "
                          f"{self.timeout:g}s (circuit breaker open)", {"Retry-After": str(wait)},
                     reason="circuit_open")

    def _admit(self, circuit: Circuit, h: int, now: float) -> int:
        """PASS, AS_TRIAL, or the seconds to wait when refused (hold the lock)."""
        if circuit.key != h or circuit.state == CLOSED:     # it closed or went since it was read
            return PASS
        if now - circuit.since >= self.timeout:
            # Open long enough; or half-open so long that its trials' worker must have died.
            self.table.set_state(circuit, HALF_OPEN, CLOSED)
            circuit.since, circuit.trials, circuit.successes = now, 0, 0
        if circuit.state == HALF_OPEN and circuit.trials < self.max_requests:
            circuit.trials += 1
            return AS_TRIAL
        return max(1, math.ceil(self.timeout - (now - circuit.since))) if circuit.state == OPEN else 1

    def refused(self, flow: Flow) -> None:
        if flow.pop(TRIAL) is not None:       # a later guard refused it: the trial never ran
            self._give_back(self._hash(self.key(flow)))

    def _give_back(self, h: int) -> None:
        with self.table.locked():
            circuit = self.table.find(h)
            if circuit is not None and circuit.state == HALF_OPEN and circuit.trials > 0:
                circuit.trials -= 1

    def interception_ended(self, flow: Flow) -> None:
        trial = flow.pop(TRIAL) is not None
        failure = is_failure(flow)
        if not trial and not failure:         # a success while closed changes nothing: no lock
            return
        key = self.key(flow)
        h = self._hash(key)
        self._name(h, key)
        if not failure:
            if flow.outcome == "canceled":
                self._give_back(h)
            else:
                self._succeeded(h)
            return
        now = time.monotonic()
        with self.table.locked():
            circuit = self.table.claim(h, lambda c: self._idle(c, now))
            opened = circuit is not None and (circuit.state == HALF_OPEN or self._count_failure(circuit, now))
            if opened and circuit is not None:
                self._open(circuit, now)
        if opened:
            self.trips[key] = self.trips.get(key, 0) + 1
        elif circuit is None and now - self._warned_at > 60:
            self._warned_at = now
            log.warning("circuit breaker table is full; failures of new circuits are not counted")

    def _succeeded(self, h: int) -> None:
        with self.table.locked():
            circuit = self.table.find(h)
            if circuit is None or circuit.state != HALF_OPEN:
                return
            circuit.successes += 1
            if circuit.successes >= self.max_requests:
                self.table.set_state(circuit, CLOSED, CLOSED)
                circuit.failures = 0

    def _idle(self, circuit: Circuit, now: float) -> bool:
        """Closed with no failure in the current window: its entry may serve another circuit."""
        return circuit.state == CLOSED and (circuit.failures == 0 or now - circuit.window_start >= self.interval)

    def _count_failure(self, circuit: Circuit, now: float) -> bool:
        if now - circuit.window_start >= self.interval:
            circuit.window_start, circuit.failures = now, 0
        circuit.failures += 1
        return circuit.state == CLOSED and circuit.failures >= self.failure_threshold

    def _open(self, circuit: Circuit, now: float) -> None:
        self.table.set_state(circuit, OPEN, CLOSED)
        circuit.since, circuit.failures, circuit.trials, circuit.successes = now, 0, 0, 0

    def state(self, key: Key) -> float:
        circuit = self.table.find(self._hash(key))
        return circuit.state if circuit is not None else CLOSED

    def collectors(self) -> list[Collector]:
        return [CircuitCollector(self)]


class CircuitCollector:
    """``circuit_breaker_state`` and ``_trips_total``, read from the circuits when scraped."""

    def __init__(self, breaker: CircuitBreakerAddon) -> None:
        self.breaker = breaker
        self.model_label = BoundedLabel(100)

    def collect(self) -> Iterator[Metric]:
        labels = ["provider", "endpoint", "model"]
        state = GaugeMetricFamily(METRIC_PREFIX + "circuit_breaker_state",
                                  "Current state of the circuit breaker (0=closed, 0.5=half-open, 1=open).",
                                  labels=labels)
        trips = CounterMetricFamily(METRIC_PREFIX + "circuit_breaker_trips",
                                    "Total number of times the circuit breaker transitioned to open state.",
                                    labels=labels)
        for key in list(self.breaker.names.values()):
            provider, endpoint, model = key
            values = [provider, endpoint, self.model_label(model)]
            state.add_metric(values, self.breaker.state(key))
            trips.add_metric(values, self.breaker.trips.get(key, 0))
        yield state
        yield trips
