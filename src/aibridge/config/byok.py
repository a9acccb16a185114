"""Options of bring-your-own-key requests (``X-Coder-AI-Governance-Token``: docs/byok.md)."""

from __future__ import annotations

from dataclasses import dataclass

from aibridge.config.option import Option

BYOK_OPTIONS: tuple[Option, ...] = (
    Option("aibridge_allow_byok", "CODER_AIBRIDGE_ALLOW_BYOK", "true", "bool",
           "Accept bring-your-own-key requests: with X-Coder-AI-Governance-Token: <AI Bridge token>, the "
           "client's own Authorization / X-Api-Key go upstream instead of a configured key. Off: such "
           "requests get a 403."),
    Option("aibridge_budget_include_byok", "CODER_AIBRIDGE_BUDGET_INCLUDE_BYOK", "true", "bool",
           "Count bring-your-own-key requests against their user's budget (they are priced and recorded "
           "either way)."),
)


@dataclass(frozen=True)
class ByokSettings:
    """Those options' fields of ``Settings``."""

    aibridge_allow_byok: bool
    aibridge_budget_include_byok: bool
