"""Options of self-service: what developers may do for themselves (their own API tokens)."""

from __future__ import annotations

from dataclasses import dataclass

from aibridge.config.option import Option

SELF_SERVICE_OPTIONS: tuple[Option, ...] = (
    Option("max_token_lifetime", "CODER_MAX_TOKEN_LIFETIME", "720h", "duration",
           "Longest lifetime of an API token made through the REST API or the web UI (a user's own, "
           "`aibridge login`, `aibridge env --create-token`); a longer one is refused. Also the default "
           "lifetime when none is asked for, if shorter than 30 days.",
           yaml="aibridge.max_token_lifetime"),
)


@dataclass(frozen=True)
class SelfServiceSettings:
    """The self-service fields of ``Settings``."""

    max_token_lifetime: float
