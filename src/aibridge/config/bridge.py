"""Options of what the bridge does to each request: actor headers and secret redaction."""

from __future__ import annotations

from dataclasses import dataclass

from aibridge.config.option import Option

REQUEST_OPTIONS: tuple[Option, ...] = (
    Option("aibridge_send_actor_headers", "CODER_AIBRIDGE_SEND_ACTOR_HEADERS", "false", "bool",
           "Send the acting user's id and name upstream in X-Ai-Bridge-Actor-* headers."),
    Option("aibridge_redact", "CODER_AIBRIDGE_REDACT", "store", "redact",
           "Secret redaction: store (secrets become [REDACTED:<kind>] before the database, logs and traces), "
           "upstream (also in the request sent upstream) or off."),
)


@dataclass(frozen=True)
class BridgeSettings:
    """Those options' fields of ``Settings``."""

    aibridge_send_actor_headers: bool
    aibridge_redact: str
