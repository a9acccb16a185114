"""Governance as addons on the flow: model rules, cost, budgets.

In ``build_addons`` order: ``ModelRulesAddon`` (aliases, allowed models) before every other guard
(an alias changes ``flow.model``, which the breaker keys by), then after the breaker and limits
``CostAddon`` (prices the interception from its usage) and ``BudgetAddon`` (reserves before the
upstream call, settles with the real cost after), all before the recorders so a refused request is
never sent nor recorded and the recorded interception carries its cost.

Budgets under concurrency. Before its upstream call a request reserves an estimate of its cost
(``prices.estimate_cost``: the request's bytes as input tokens, its ``max_tokens`` or
``--aibridge-budget-output-estimate`` as output), capped at ``--aibridge-budget-max-reservation``
so agents with large contexts are not refused at zero spend. A reservation is admitted when it fits
under the limit with everything settled and held, or when nothing is held and the budget is not
used up (one request at a time always goes through). When the answer ends, the reservation is
replaced by the real cost. The overshoot is bounded (docs/governance.md): at most one reservation
(≤ the cap) plus, for requests whose real cost exceeded their reservation (an estimate above the
cap, or several upstream calls), that excess.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.bridge.flow import Addon, Flow, FlowKey, Reject
from aibridge.bridge.providers.base import Provider, UpstreamRequest
from aibridge.bridge.scrape import METRIC_PREFIX, Collector
from aibridge.governance.prices import estimate_cost, usage_cost
from aibridge.governance.rules import Budget, Governance, matches_any, period_end, period_start
from aibridge.identity.roles import Actor
from aibridge.store import governance as store
from aibridge.store.users import iso

log = logging.getLogger("aibridge.governance")

ALIASED: FlowKey[str] = FlowKey("governance.aliased")     # the model name sent upstream, when an alias applied
THRESHOLDS = (85, 100)                                    # percent of a budget, reported once per period
ADJECTIVE = {"day": "daily", "week": "weekly", "month": "monthly"}


def usd(micros: int) -> str:
    value = micros / store.MICROS
    return f"${value:,.2f}" if value >= 0.1 or value == 0 else f"${value:,.4f}"


# ---------------------------------------------------------------- model rules

class ModelRulesAddon(Addon):
    """Aliases are applied before routing and recorded (asked and served model); a model outside
    the user's allowed patterns is refused before any upstream call."""

    def __init__(self, governance: Governance) -> None:
        self.governance = governance

    async def admit(self, flow: Flow) -> None:
        asked = flow.info.model
        if flow.passed_through and not asked:
            return          # a passed-through request that names no model (a model list, a stored object)
        rules = await self.governance.rules()
        target = rules.alias(asked, flow.provider.name)
        if target is not None and target != asked:
            flow.put(ALIASED, target)
            flow.model = flow.provider.upstream_model(target)
        allowed = rules.allowed_for(flow.actor.username, flow.actor.role, flow.actor.id)
        if allowed is not None and not (matches_any(target or asked, allowed) or matches_any(flow.model, allowed)):
            shown = ", ".join(allowed) if allowed else "none"
            raise Reject(403, f"model {asked!r} is not allowed for you; allowed models: {shown}. "
                              "Ask an AI Bridge owner if you need it.", reason="model_not_allowed")

    def upstream_request(self, flow: Flow, request: UpstreamRequest) -> None:
        target = flow.get(ALIASED)
        if target is not None and request.json is not None and request.json.get("model") != target:
            request.json["model"] = target
            request.body = orjson.dumps(request.json)

    async def visible_models(self, actor: Actor, provider: Provider, ids: list[str]) -> set[str] | None:
        """Which of a model list's ids the actor may use (the ``GET …/v1/models`` filter)."""
        rules = await self.governance.rules()
        allowed = rules.allowed_for(actor.username, actor.role, actor.id)
        if allowed is None:
            return None
        return {i for i in ids if matches_any(rules.alias(i, provider.name) or i, allowed)}


# ---------------------------------------------------------------- cost

class CostAddon(Addon):
    """Prices each interception from its recorded usage (``flow.cost_usd``; None without a price)."""

    def __init__(self, governance: Governance) -> None:
        self.governance = governance

    def interception_ended(self, flow: Flow) -> None:
        price = self.governance.snapshot.prices.lookup(flow.model)
        flow.cost_usd = None if price is None else round(usage_cost(price, flow.findings), 9)


# ---------------------------------------------------------------- budgets

@dataclass(frozen=True, slots=True)
class Hold:
    """What a flow reserved: the ledger row and the amount (micro-dollars)."""

    period: str
    start: dt.datetime
    amount: int
    limit: int


HOLD: FlowKey[Hold] = FlowKey("governance.hold")


def refusal_message(budget: Budget, spent: int, reserved: int, amount: int, start: dt.datetime) -> str:
    limit = store.to_micros(budget.limit_usd)
    resets = iso(period_end(budget.period, start))
    kind = "your" if budget.scope == "user" else f"the {budget.subject} {budget.scope}'s"
    if spent >= limit:
        return (f"budget exceeded: {usd(spent)} spent of {kind} {usd(limit)} {ADJECTIVE[budget.period]} budget; "
                f"it resets at {resets}")
    return (f"budget nearly used: {usd(spent)} spent and {usd(reserved)} held by requests in flight of {kind} "
            f"{usd(limit)} {ADJECTIVE[budget.period]} budget, and this request may cost up to {usd(amount)}; "
            f"retry when your other requests finish, or wait for the reset at {resets}")


class BudgetAddon(Addon):
    def __init__(self, governance: Governance, engine: AsyncEngine, max_reservation: float,
                 output_estimate: int, include_byok: bool = True) -> None:
        self.governance = governance
        self.include_byok = include_byok    # --aibridge-budget-include-byok
        self.engine = engine
        self.max_reservation = store.to_micros(max_reservation)
        self.output_estimate = output_estimate
        self.crossings: dict[int, int] = dict.fromkeys(THRESHOLDS, 0)    # read by the metrics when scraped
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_at = -float("inf")

    def collectors(self) -> list[Collector]:
        return [BudgetThresholdCollector(self)]

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def reservation(self, flow: Flow) -> int:
        price = self.governance.snapshot.prices.lookup(flow.model)
        if price is None:
            return 0                # no price: nothing to estimate; the request is held at no cost
        output = flow.info.max_output_tokens or self.output_estimate
        return min(store.to_micros(estimate_cost(price, flow.info.size, output)), self.max_reservation)

    async def admit(self, flow: Flow) -> None:
        if flow.passed_through:
            return      # costs nothing: neither reserved nor refused, even over budget (docs/governance.md)
        if flow.credential.byok and not self.include_byok:
            return      # the user pays their own provider: neither reserved nor counted (docs/byok.md)
        budget = (await self.governance.rules()).budget_for(flow.actor.username, flow.actor.role, flow.actor.id)
        if budget is None:
            return
        start = period_start(budget.period, dt.datetime.now(dt.UTC))
        amount, limit = self.reservation(flow), store.to_micros(budget.limit_usd)
        try:
            admitted, ledger = await store.reserve(self.engine, flow.actor.id, budget.period, start, amount, limit,
                                                   self.include_byok)
        except Exception as exc:        # an outage of the ledger must not become an outage of the gateway
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("budget: the ledger cannot be reached (%s); letting requests through unbudgeted", exc)
            return
        if not admitted:
            raise Reject(403, refusal_message(budget, ledger.spent, ledger.reserved, amount, start),
                         reason="budget")
        flow.put(HOLD, Hold(budget.period, start, amount, limit))

    def refused(self, flow: Flow) -> None:
        self._settle(flow, 0)       # a later guard refused: give the reservation back

    def interception_ended(self, flow: Flow) -> None:
        self._settle(flow, store.to_micros(flow.cost_usd or 0.0))

    def _settle(self, flow: Flow, cost: int) -> None:
        hold = flow.pop(HOLD)
        if hold is not None:
            self._spawn(self._settle_now(flow.actor, hold, cost))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_now(self, actor: Actor, hold: Hold, cost: int) -> None:
        try:
            spent = await store.settle(self.engine, actor.id, hold.period, hold.start, hold.amount, cost)
            level = max((t for t in THRESHOLDS if hold.limit and spent * 100 >= hold.limit * t), default=0)
            if level and await store.mark_notified(self.engine, actor.id, hold.period, hold.start, level):
                self.crossings[level] += 1
                log.warning("budget: user %s reached %d%% of the %s budget (%s of %s; resets %s)",
                            actor.username, level, ADJECTIVE[hold.period], usd(spent), usd(hold.limit),
                            iso(period_end(hold.period, hold.start)),
                            extra={"event": "budget_threshold", "user": actor.username, "threshold": level,
                                   "spent_usd": spent / store.MICROS, "limit_usd": hold.limit / store.MICROS})
        except Exception:
            log.exception("budget: could not settle a reservation of user %s", actor.username)


async def budget_status(governance: Governance, engine: AsyncEngine, username: str, role: str,
                        user_id: Any, include_byok: bool = True) -> dict[str, Any] | None:
    """``{limit_usd, spent_usd, period, resets_at, source}`` of a user's budget in force, or None;
    ``source`` says why it applies: ``user``, ``group:NAME`` or ``role:NAME``."""
    budget = (await governance.rules()).budget_for(username, role, user_id)
    if budget is None:
        return None
    start = period_start(budget.period, dt.datetime.now(dt.UTC))
    end = period_end(budget.period, start)
    # The records' spend, read as the spend export reads it: the ledger only holds what requests
    # settled while a budget applied, so it can lag behind what the export shows.
    spent = await store.spent_usd(engine, user_id, start, end, include_byok)
    return {"limit_usd": budget.limit_usd, "spent_usd": spent, "period": budget.period, "resets_at": iso(end),
            "source": budget.source_label()}


class BudgetThresholdCollector:
    """``budget_threshold_crossings_total{threshold}``: users reaching 85% and 100% of a budget, read
    from the budget addon's ``crossings`` (percent → count) when scraped."""

    def __init__(self, budgets: BudgetAddon) -> None:
        self.budgets = budgets

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(METRIC_PREFIX + "budget_threshold_crossings",
                                     "Users who reached a threshold (percent) of their budget in a period.",
                                     labels=["threshold"])
        for threshold, count in sorted(self.budgets.crossings.items()):
            family.add_metric([str(threshold)], count)
        yield family
