"""``--aibridge-structured-logging``: one log line per record, for log pipelines.

An addon on the flow: every record the recording addon stores becomes one line with the message ``interception log``, a
``record_type`` (``interception_start``, ``interception_end``, ``token_usage``,
``prompt_usage``, ``tool_usage``, ``model_thought``) and the record's fields as log extras, so
``--log-json`` output carries them as JSON keys. Records hold no credentials (the user's token
and the provider keys never reach a record), so nothing secret can be logged from here.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from aibridge.bridge.apis.base import Finding
from aibridge.bridge.flow import Addon, Flow
from aibridge.recording.addon import end_record, start_records, to_record
from aibridge.store import records as rec

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


class StructuredLogAddon(Addon):
    """Logs each record of an interception as the flow produces it."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("aibridge.interceptions")

    def request_parsed(self, flow: Flow) -> None:
        for record in start_records(flow):
            self.log(record)

    def finding(self, flow: Flow, finding: Finding) -> None:
        self.log(to_record(flow, finding))

    def interception_ended(self, flow: Flow) -> None:
        self.log(end_record(flow))

    def log(self, record: rec.Record) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        extra = {"record_type": RECORD_TYPES[type(record)], **record_fields(record)}
        self.logger.info(MESSAGE, extra=extra)
