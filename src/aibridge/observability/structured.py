"""``--aibridge-structured-logging``: one log line per record, for log pipelines.

Every record the recorder accepts becomes one line with the message ``interception log``, a
``record_type`` (``interception_start``, ``interception_end``, ``token_usage``,
``prompt_usage``, ``tool_usage``, ``model_thought``) and the record's fields as log extras, so
``--log-json`` output carries them as JSON keys. Records hold no credentials (the user's token
and the provider keys never reach a record), so nothing secret can be logged from here.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from aibridge.recording import records as rec

MESSAGE = "interception log"

RECORD_TYPES: dict[type, str] = {
    rec.InterceptionStart: "interception_start",
    rec.InterceptionEnd: "interception_end",
    rec.TokenUsageRecord: "token_usage",
    rec.PromptRecord: "prompt_usage",
    rec.ToolUsageRecord: "tool_usage",
    rec.ThoughtRecord: "model_thought",
}
# Attributes a LogRecord has already: ``extra`` may not overwrite them.
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def record_fields(record: rec.Record) -> dict[str, Any]:
    """The record's fields, keyed so that every line of one interception shares ``interception_id``."""
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    if isinstance(record, rec.InterceptionStart | rec.InterceptionEnd):
        fields["interception_id"] = fields.pop("id")
    return {("record_" + k if k in _RESERVED else k): v for k, v in fields.items()}


class StructuredLogger:
    """A ``Recorder.listeners`` callback that logs each record as it is accepted."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("aibridge.interceptions")

    def __call__(self, record: rec.Record) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        extra = {"record_type": RECORD_TYPES[type(record)], **record_fields(record)}
        self.logger.info(MESSAGE, extra=extra)
