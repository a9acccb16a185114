"""Options of the audit log (DESIGN §2.6): how long its rows are kept."""

from __future__ import annotations

from dataclasses import dataclass

from aibridge.config.option import Option

AUDIT_OPTIONS: tuple[Option, ...] = (
    Option("audit_logs_retention", "CODER_AUDIT_LOGS_RETENTION", "90d", "duration",
           "How long audit log rows are kept (0 keeps them forever); purged in batches like interceptions."),
)


@dataclass(frozen=True)
class AuditSettings:
    """The audit log's fields of ``Settings``."""

    audit_logs_retention: float
