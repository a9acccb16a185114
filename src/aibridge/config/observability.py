"""Options of logs, metrics and traces."""

from __future__ import annotations

from dataclasses import dataclass

from aibridge.config.option import Option

STRUCTURED_LOG_OPTIONS: tuple[Option, ...] = (
    Option("aibridge_structured_logging", "CODER_AIBRIDGE_STRUCTURED_LOGGING", "false", "bool",
           "Log one structured line per recorded item."),
)

OBSERVABILITY_OPTIONS: tuple[Option, ...] = (
    Option("prometheus_enable", "CODER_PROMETHEUS_ENABLE", "false", "bool",
           "Serve Prometheus metrics on /metrics and on the Prometheus address."),
    Option("prometheus_address", "CODER_PROMETHEUS_ADDRESS", "127.0.0.1:2112", "address",
           "Address of the separate Prometheus metrics listener."),
    Option("trace", "CODER_TRACE_ENABLE", "false", "bool",
           "Export OpenTelemetry traces over OTLP (configured with the standard OTEL_* variables)."),
    Option("log_json", "CODER_LOGGING_JSON", "false", "bool",
           "Write logs as JSON lines instead of human-readable text."),
)


@dataclass(frozen=True)
class ObservabilitySettings:
    """Observability's fields of ``Settings``."""

    aibridge_structured_logging: bool
    prometheus_enable: bool
    prometheus_address: str
    trace: bool
    log_json: bool
