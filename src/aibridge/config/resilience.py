"""Options of the guards: the limits and the circuit breaker."""

from __future__ import annotations

from dataclasses import dataclass

from aibridge.config.option import Option


def _cb(suffix: str, default: str, kind: str, help_: str) -> Option:
    return Option(f"aibridge_circuit_breaker_{suffix}", f"CODER_AIBRIDGE_CIRCUIT_BREAKER_{suffix.upper()}",
                  default, kind, help_)


LIMIT_OPTIONS: tuple[Option, ...] = (
    Option("aibridge_max_concurrency", "CODER_AIBRIDGE_MAX_CONCURRENCY", "0", "int",
           "Maximum concurrent intercepted requests (0: unlimited)."),
    Option("aibridge_rate_limit", "CODER_AIBRIDGE_RATE_LIMIT", "0", "float",
           "Requests per second allowed per user, all its tokens together (0: unlimited)."),
    Option("aibridge_redis_url", "CODER_AIBRIDGE_REDIS_URL", "", "str",
           "Redis URL for rate limits shared by several replicas (empty: counted in this process).",
           secret=True),
)

CIRCUIT_BREAKER_OPTIONS: tuple[Option, ...] = (
    Option("aibridge_circuit_breaker_enabled", "CODER_AIBRIDGE_CIRCUIT_BREAKER_ENABLED", "false", "bool",
           "Stop calling an upstream that keeps failing."),
    _cb("failure_threshold", "5", "int", "Failures within the interval that open the circuit."),
    _cb("interval", "10s", "duration", "Window in which failures are counted."),
    _cb("timeout", "30s", "duration", "How long an open circuit rejects before trying again."),
    _cb("max_requests", "3", "int", "Trial requests allowed while half-open."),
)


@dataclass(frozen=True)
class ResilienceSettings:
    """The guards' fields of ``Settings``."""

    aibridge_max_concurrency: int
    aibridge_rate_limit: float
    aibridge_redis_url: str
    aibridge_circuit_breaker_enabled: bool
    aibridge_circuit_breaker_failure_threshold: int
    aibridge_circuit_breaker_interval: float
    aibridge_circuit_breaker_timeout: float
    aibridge_circuit_breaker_max_requests: int
