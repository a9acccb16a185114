"""Prometheus metrics of the proxy (Coder's names, prefix ``coder_aibridgeproxyd_``).

They live in the bridge's registry, so ``/metrics`` and the Prometheus listener show both.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

PREFIX = "coder_aibridgeproxyd_"


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connect_sessions = Counter(PREFIX + "connect_sessions_total",
                                        "CONNECT sessions handled, by type (mitm or tunneled).", ("type",),
                                        registry=registry)
        self.mitm_requests = Counter(PREFIX + "mitm_requests_total",
                                     "Decrypted requests handed to AI Bridge.", ("provider",), registry=registry)
        self.inflight = Gauge(PREFIX + "inflight_mitm_requests", "Decrypted requests being answered now.",
                              ("provider",), registry=registry, multiprocess_mode="livesum")
        self.mitm_responses = Counter(PREFIX + "mitm_responses_total",
                                      "Answers to decrypted requests, by status code.", ("code", "provider"),
                                      registry=registry)
