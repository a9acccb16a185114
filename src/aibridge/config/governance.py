"""Options of governance: how long records are kept, budgets, and how soon rule changes apply."""

from __future__ import annotations

from dataclasses import dataclass

from aibridge.config.option import Option

# Governance rules in the YAML file (under ``aibridge:``), parsed by ``aibridge.governance.rules``.
GOVERNANCE_YAML_KEYS = ("prices", "budgets", "model_rules")

RETENTION_OPTIONS: tuple[Option, ...] = (
    Option("aibridge_retention", "CODER_AIBRIDGE_RETENTION", "60d", "duration",
           "How long interception records are kept (0 keeps them forever)."),
)

# Budgets and the refresh of prices, budgets and model rules.
GOVERNANCE_OPTIONS: tuple[Option, ...] = (
    Option("aibridge_budget_max_reservation", "CODER_AIBRIDGE_BUDGET_MAX_RESERVATION", "1", "float",
           "Most a request reserves from its user's budget before the upstream call, in USD: caps the cost "
           "estimate so agents with large contexts are not refused, and bounds the overshoot."),
    Option("aibridge_budget_output_estimate", "CODER_AIBRIDGE_BUDGET_OUTPUT_ESTIMATE", "4096", "int",
           "Output tokens a budget reservation assumes for a request that sets no max_tokens."),
    Option("aibridge_governance_refresh", "CODER_AIBRIDGE_GOVERNANCE_REFRESH", "10s", "duration",
           "How often prices, budgets and model rules are re-read even without a change signal (changes "
           "apply at once on this server and within 1 s on other replicas; this bounds staleness if "
           "those signals stop)."),
)


# Groups as subjects of budgets (issue 22); Coder's own names, hence no ``aibridge`` prefix.
BUDGET_POLICY_OPTIONS: tuple[Option, ...] = (
    Option("ai_budget_policy", "CODER_AI_BUDGET_POLICY", "highest", "budget_policy",
           "Which group budget applies to a user in several budgeted groups: highest (the largest "
           "limit; Coder's only policy). A user's own budget beats its groups', groups beat roles.",
           yaml="aibridge.budget_policy"),
)


@dataclass(frozen=True)
class BudgetPolicySettings:
    """The budget policy's field of ``Settings``."""

    ai_budget_policy: str


@dataclass(frozen=True)
class GovernanceSettings:
    """Governance's fields of ``Settings``."""

    aibridge_retention: float
    aibridge_budget_max_reservation: float
    aibridge_budget_output_estimate: int
    aibridge_governance_refresh: float
