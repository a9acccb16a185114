"""The governance rules in force: prices, budgets, allowed models and aliases.

Three sources, each overriding the one before: shipped prices, the YAML configuration
(``aibridge.prices``, ``aibridge.budgets``, ``aibridge.model_rules``) and what owners set through
the REST API or CLI (stored in the database, so every replica sees it). The merged snapshot is
cached in memory, so the bridge's hot path does not read these tables per request. Every change
bumps the governance generation (``store/changes.py``): the snapshot is read again on the first
use after the generation moved (at once on every worker of the server that made the change,
within 1 s on the others), and at least every ``refresh`` seconds in any case.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import fnmatch
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.config import ConfigError
from aibridge.governance.prices import Price, PriceTable, is_glob, parse_price, shipped_prices
from aibridge.identity.roles import ROLES
from aibridge.store import governance as store
from aibridge.store.changes import Generations
from aibridge.store.groups import validate_group_name

log = logging.getLogger("aibridge.governance")

PERIODS = ("day", "week", "month")
SCOPES = ("user", "group", "role")


# ---------------------------------------------------------------- periods (UTC)

def period_start(period: str, now: dt.datetime) -> dt.datetime:
    day = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":                                   # ISO weeks start on Monday
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def period_end(period: str, start: dt.datetime) -> dt.datetime:
    if period == "day":
        return start + dt.timedelta(days=1)
    if period == "week":
        return start + dt.timedelta(days=7)
    return start + dt.timedelta(days=calendar.monthrange(start.year, start.month)[1])


# ---------------------------------------------------------------- the snapshot

@dataclass(frozen=True, slots=True)
class Budget:
    scope: str          # "user" | "group" | "role"
    subject: str        # username, group name or role name
    period: str
    limit_usd: float
    source: str = "owner"

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "subject": self.subject, "period": self.period,
                "limit_usd": self.limit_usd, "source": self.source}

    def source_label(self) -> str:
        """Why it applies to a user (``users/me``): ``user``, ``group:NAME`` or ``role:NAME``."""
        return "user" if self.scope == "user" else f"{self.scope}:{self.subject}"


def matches_any(model: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(model, p) for p in patterns)


@dataclass
class Rules:
    prices: PriceTable
    price_sources: dict[str, str] = field(default_factory=dict)      # pattern → default | config | owner
    budgets: dict[tuple[str, str], Budget] = field(default_factory=dict)
    allow: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)   # (from, provider or "") → to
    memberships: dict[uuid.UUID, list[str]] = field(default_factory=dict)  # user id → group names

    def groups_of(self, user_id: uuid.UUID | None) -> list[str]:
        return self.memberships.get(user_id, []) if user_id is not None and self.memberships else []

    def budget_for(self, username: str, role: str, user_id: uuid.UUID | None = None) -> Budget | None:
        """A user's own budget beats its groups', which beat its role's. Of several group budgets
        the highest limit applies (policy ``highest``, Coder's only one); each is a limit for each
        member, not a pot the members share. Asked per request: dictionary lookups only."""
        own = self.budgets.get(("user", username))
        if own is not None:
            return own
        best: Budget | None = None
        for group in self.groups_of(user_id):
            found = self.budgets.get(("group", group))
            if found is not None and (best is None or (found.limit_usd, found.subject) >
                                      (best.limit_usd, best.subject)):
                best = found
        return best if best is not None else self.budgets.get(("role", role))

    def allowed_for(self, username: str, role: str, user_id: uuid.UUID | None = None) -> list[str] | None:
        """The allowed model patterns; None: every model. A model is allowed by the user's own rule
        or any of its groups' rules; only when none of those exists, by its role's rule."""
        own = self.allow.get(("user", username))
        rules = [r for g in self.groups_of(user_id) if (r := self.allow.get(("group", g))) is not None]
        if not rules:
            return own if own is not None else self.allow.get(("role", role))
        if own is not None:
            rules.insert(0, own)
        return list(dict.fromkeys(p for r in rules for p in r))

    def alias(self, model: str, provider: str) -> str | None:
        """What ``model`` is served as: an exact alias (this provider's, then any provider's), then a glob."""
        if not self.aliases:            # most deployments: asked for every request
            return None
        for key in ((model, provider), (model, "")):
            if key in self.aliases:
                return self.aliases[key]
        globs = sorted(((f, p) for f, p in self.aliases if is_glob(f) and p in (provider, "")),
                       key=lambda k: (-len(k[0]), k[1] == ""))
        return next((self.aliases[k] for k in globs if fnmatch.fnmatchcase(model, k[0])), None)

    def to_model_rules_json(self) -> dict[str, Any]:
        return {
            "allow": [{"scope": s, "subject": subject, "models": patterns}
                      for (s, subject), patterns in sorted(self.allow.items())],
            "aliases": [{"from": f, "to": to, "provider": p} for (f, p), to in sorted(self.aliases.items())],
        }


# ---------------------------------------------------------------- YAML configuration

@dataclass
class Configured:
    """The governance rules of the YAML file, validated at start-up."""

    prices: dict[str, Price] = field(default_factory=dict)
    budgets: dict[tuple[str, str], Budget] = field(default_factory=dict)
    allow: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)


def _subject(entry: Mapping[str, Any], where: str) -> tuple[str, str]:
    scopes = [s for s in SCOPES if entry.get(s)]
    if len(scopes) != 1:
        raise ConfigError(f"{where}: name exactly one of user, group or role")
    scope = scopes[0]
    subject = str(entry[scope])
    if scope == "role" and subject not in ROLES:
        raise ConfigError(f"{where}: unknown role {subject!r} (use one of {', '.join(ROLES)})")
    if scope == "group":
        try:
            validate_group_name(subject)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return scope, subject


def check_budget(period: object, limit: object, where: str) -> tuple[str, float]:
    if period not in PERIODS:
        raise ValueError(f"{where}: period must be one of {', '.join(PERIODS)}, got {period!r}")
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
        raise ValueError(f"{where}: limit_usd must be a non-negative number, got {limit!r}")
    return str(period), float(limit)


def check_patterns(patterns: object, where: str) -> list[str]:
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p.strip() for p in patterns):
        raise ValueError(f"{where}: models must be a list of model names or globs")
    return [p.strip() for p in patterns]


def _list(doc: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    items = doc.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ConfigError(f"{where}: must be a list of mappings")
    return items


def parse_configured(doc: Mapping[str, Any]) -> Configured:
    """``doc``: the YAML ``aibridge:`` mapping's ``prices``, ``budgets`` and ``model_rules``."""
    found = Configured()
    try:
        prices = doc.get("prices") or {}
        if not isinstance(prices, Mapping):
            raise ConfigError("config aibridge.prices: must map model names or globs to prices")
        for model, value in prices.items():
            found.prices[str(model)] = parse_price(value, f"config aibridge.prices.{model}")
        for i, entry in enumerate(_list(doc, "budgets", "config aibridge.budgets")):
            where = f"config aibridge.budgets[{i}]"
            key = _subject(entry, where)
            period, limit = check_budget(entry.get("period"), entry.get("limit_usd"), where)
            found.budgets[key] = Budget(*key, period, limit, "config")
        rules = doc.get("model_rules") or {}
        if not isinstance(rules, Mapping):
            raise ConfigError("config aibridge.model_rules: must be a mapping with allow and aliases")
        for i, entry in enumerate(_list(rules, "allow", "config aibridge.model_rules.allow")):
            where = f"config aibridge.model_rules.allow[{i}]"
            found.allow[_subject(entry, where)] = check_patterns(entry.get("models"), where)
        for i, entry in enumerate(_list(rules, "aliases", "config aibridge.model_rules.aliases")):
            source, target = entry.get("from"), entry.get("to")
            if not isinstance(source, str) or not isinstance(target, str) or not source or not target:
                raise ConfigError(f"config aibridge.model_rules.aliases[{i}]: from and to are model names")
            found.aliases[(source, str(entry.get("provider") or ""))] = target
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return found


# ---------------------------------------------------------------- the source

def merge(configured: Configured, stored: store.StoredRules | None) -> Rules:
    entries: dict[str, Price] = dict(shipped_prices())
    sources = dict.fromkeys(entries, "default")
    for model, price in configured.prices.items():
        entries[model], sources[model] = price, "config"
    budgets = dict(configured.budgets)
    allow = dict(configured.allow)
    aliases = dict(configured.aliases)
    memberships: dict[uuid.UUID, list[str]] = {}
    if stored is not None:
        for model, values in stored.prices.items():
            entries[model], sources[model] = Price(*values), "owner"
        budgets.update({key: Budget(*key, period, limit) for key, (period, limit) in stored.budgets.items()})
        allow.update(stored.allow)
        aliases.update(stored.aliases)
        memberships = stored.memberships
    return Rules(PriceTable(entries), sources, budgets, allow, aliases, memberships)


class Governance:
    """The rules snapshot, re-read when the governance generation moves or ``refresh`` seconds passed."""

    def __init__(self, engine: AsyncEngine, configured: Configured, generations: Generations,
                 refresh: float = 10.0) -> None:
        self.engine = engine
        self.configured = configured
        self._changed = generations.governance      # the shared cell (store/changes.py)
        self.refresh = refresh
        self.snapshot = merge(configured, None)     # until the database is first read
        self._read_at = -float("inf")
        self._generation = -1                       # the snapshot is as of this generation
        self._lock = asyncio.Lock()
        self._warned = False

    def _stale(self) -> bool:
        return (self._changed.value != self._generation
                or time.monotonic() - self._read_at >= self.refresh)

    async def rules(self) -> Rules:
        if not self._stale():
            return self.snapshot
        async with self._lock:
            if self._stale():
                await self._reload()
        return self.snapshot

    async def _reload(self) -> None:
        generation = self._changed.value            # before the read: a change during it reads again
        try:
            stored = await store.load_rules(self.engine)
        except Exception as exc:        # keep the last rules: a database hiccup must not stop the bridge
            if not self._warned:
                log.warning("governance rules could not be read (%s); using the last ones", exc)
                self._warned = True
            self._read_at = time.monotonic() - self.refresh + 1.0      # retry in a second, not per request
            self._generation = generation
            return
        self._warned = False
        self.snapshot = merge(self.configured, stored)
        self._read_at = time.monotonic()
        self._generation = generation
