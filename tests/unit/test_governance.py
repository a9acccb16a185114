"""Prices, periods, rules and the budget ledger (on real SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from aibridge.bridge.apis.base import Finding, ToolCall, Usage
from aibridge.config import ConfigError, load_settings, postgres_async_url
from aibridge.governance.prices import Price, PriceTable, estimate_cost, parse_price, shipped_prices, usage_cost
from aibridge.governance.rules import Budget, Configured, merge, parse_configured, period_end, period_start
from aibridge.store import governance as store
from aibridge.store import users as user_store
from aibridge.store.db import create_engine, migrate
from tests.harness import Database


def test_exact_name_beats_globs_and_the_longest_glob_wins() -> None:
    table = PriceTable({"gpt-5*": Price(1, 1, 1, 1), "gpt-5-mini*": Price(2, 2, 2, 2),
                        "gpt-5-mini-special": Price(3, 3, 3, 3)})
    assert table.lookup("gpt-5-2025") == Price(1, 1, 1, 1)
    assert table.lookup("gpt-5-mini-2025") == Price(2, 2, 2, 2)
    assert table.lookup("gpt-5-mini-special") == Price(3, 3, 3, 3)
    assert table.lookup("gpt-4o") is None


@pytest.mark.parametrize(("model", "input_price", "output_price"), [
    ("claude-sonnet-4-5-20250929", 3.0, 15.0),
    ("claude-opus-4-5-20251101", 5.0, 25.0),
    ("claude-opus-4-1-20250805", 15.0, 75.0),
    ("claude-haiku-4-5-20251001", 1.0, 5.0),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", 3.0, 15.0),     # Bedrock
    ("us.anthropic.claude-haiku-4-5-20251001-v1:0", 1.0, 5.0),
    ("gpt-5", 1.25, 10.0),
    ("gpt-5-mini-2025-08-07", 0.25, 2.0),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("o4-mini", 1.10, 4.40),
])
def test_shipped_prices_cover_current_models(model: str, input_price: float, output_price: float) -> None:
    price = PriceTable(shipped_prices()).lookup(model)
    assert price is not None and (price.input, price.output) == (input_price, output_price)


def test_cost_counts_each_kind_of_token_at_its_price() -> None:
    price = Price(input=3, output=15, cache_read=0.3, cache_write=3.75)
    findings: list[Finding] = [Usage("a", 1000, 200, 5000, 100), ToolCall("a", "c", "bash", "{}"), Usage("b", 10, 20)]
    expected = (1010 * 3 + 220 * 15 + 5000 * 0.3 + 100 * 3.75) / 1_000_000
    assert usage_cost(price, findings) == pytest.approx(expected)


def test_estimate_is_an_upper_bound_of_one_call() -> None:
    price = Price(input=3, output=15, cache_read=0.3, cache_write=3.75)
    # 3000 bytes → 1000 input tokens at the dearer cache-write price, plus the whole output cap.
    assert estimate_cost(price, 3000, 500) == pytest.approx((1000 * 3.75 + 500 * 15) / 1_000_000)


def test_parse_price_defaults_and_errors() -> None:
    assert parse_price({"input": 2, "output": 4}, "x") == Price(2, 4, 2, 2)
    for bad, message in (({"input": 1}, "output is required"), ({"input": "1", "output": 1}, "input must be"),
                         ({"input": 1, "output": 1, "cached": 1}, "unknown field 'cached'"),
                         ({"input": float("nan"), "output": 1}, "input must be"), ([1], "a price is a mapping")):
        with pytest.raises(ValueError, match=message):
            parse_price(bad, "x")


def test_periods_are_utc_calendar_periods() -> None:
    moment = dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))   # Jan 1 01:30 UTC
    assert period_start("day", moment) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert period_start("month", moment) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert period_start("week", moment) == dt.datetime(2026, 12, 28, tzinfo=dt.UTC)       # a Monday
    assert period_end("month", dt.datetime(2028, 2, 1, tzinfo=dt.UTC)) == dt.datetime(2028, 3, 1, tzinfo=dt.UTC)
    assert period_end("month", dt.datetime(2026, 12, 1, tzinfo=dt.UTC)) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert period_end("week", dt.datetime(2026, 12, 28, tzinfo=dt.UTC)) == dt.datetime(2027, 1, 4, tzinfo=dt.UTC)


def test_rules_precedence() -> None:
    configured = parse_configured({
        "prices": {"gpt-5*": {"input": 9, "output": 9}},
        "budgets": [{"role": "member", "period": "month", "limit_usd": 5}],
        "model_rules": {"allow": [{"role": "member", "models": ["claude-sonnet-*"]}],
                        "aliases": [{"from": "sonnet", "to": "claude-sonnet-4-5"},
                                    {"from": "claude-3-5-haiku*", "to": "claude-haiku-4-5", "provider": "anthropic"}]}})
    stored = store.StoredRules(prices={"gpt-5*": (1, 2, 3, 4)},
                               budgets={("user", "ann"): ("day", 1.0)},
                               allow={("user", "ann"): ["*"]},
                               aliases={("sonnet", "work"): "claude-sonnet-4-5-work"})
    rules = merge(configured, stored)
    assert rules.prices.lookup("gpt-5") == Price(1, 2, 3, 4) and rules.price_sources["gpt-5*"] == "owner"
    assert rules.budget_for("ann", "member") == Budget("user", "ann", "day", 1.0)
    assert rules.budget_for("bob", "member") == Budget("role", "member", "month", 5.0, "config")
    assert rules.budget_for("olga", "owner") is None
    assert rules.allowed_for("ann", "member") == ["*"] and rules.allowed_for("bob", "member") == ["claude-sonnet-*"]
    assert rules.allowed_for("olga", "owner") is None
    assert rules.alias("sonnet", "work") == "claude-sonnet-4-5-work"          # the provider's own alias first
    assert rules.alias("sonnet", "anthropic") == "claude-sonnet-4-5"
    assert rules.alias("claude-3-5-haiku-20241022", "anthropic") == "claude-haiku-4-5"
    assert rules.alias("claude-3-5-haiku-20241022", "openai") is None
    assert merge(Configured(), None).prices.lookup("claude-sonnet-4-5") is not None


def test_group_rules_precedence() -> None:
    """A user's own budget beats its groups' (the highest of them), which beat its role's; a model is
    allowed by the user's own rule or any of its groups' rules, else by its role's."""
    ann, bob, cid, dan = (uuid.uuid4() for _ in range(4))
    configured = parse_configured({
        "budgets": [{"role": "member", "period": "month", "limit_usd": 50},
                    {"group": "design", "period": "month", "limit_usd": 2}],
        "model_rules": {"allow": [{"role": "member", "models": ["*"]},
                                  {"group": "design", "models": ["claude-haiku-*"]}]}})
    stored = store.StoredRules(
        prices={}, budgets={("user", "ann"): ("day", 1.0), ("group", "platform"): ("month", 5.0),
                            ("group", "data"): ("month", 8.0)},
        allow={("group", "platform"): ["claude-sonnet-*"], ("user", "ann"): ["gpt-5*"]}, aliases={},
        memberships={ann: ["platform", "data"], bob: ["platform", "data", "design"], cid: ["design"]})
    rules = merge(configured, stored)
    assert rules.budget_for("ann", "member", ann) == Budget("user", "ann", "day", 1.0)
    assert rules.budget_for("bob", "member", bob) == Budget("group", "data", "month", 8.0)     # the highest
    assert rules.budget_for("cid", "member", cid) == Budget("group", "design", "month", 2.0, "config")
    assert rules.budget_for("dan", "member", dan) == Budget("role", "member", "month", 50.0, "config")
    assert [b.source_label() for b in (rules.budget_for("bob", "member", bob), rules.budget_for("ann", "member", ann),
                                       rules.budget_for("dan", "member", dan)) if b] == ["group:data", "user",
                                                                                          "role:member"]
    assert rules.allowed_for("ann", "member", ann) == ["gpt-5*", "claude-sonnet-*"]
    assert rules.allowed_for("bob", "member", bob) == ["claude-sonnet-*", "claude-haiku-*"]
    assert rules.allowed_for("dan", "member", dan) == ["*"]                 # no own or group rule: the role's
    assert rules.allowed_for("eve", "owner", uuid.uuid4()) is None


def test_yaml_group_rules_need_a_valid_name() -> None:
    with pytest.raises(ConfigError, match=r"budgets\[0\]: name exactly one of user, group or role"):
        parse_configured({"budgets": [{"group": "a", "role": "member", "period": "day", "limit_usd": 1}]})
    with pytest.raises(ConfigError, match="invalid group name"):
        parse_configured({"model_rules": {"allow": [{"group": "no spaces", "models": ["*"]}]}})


def test_budget_policy_option(tmp_path: object) -> None:
    from pathlib import Path
    assert load_settings({}, env={}).ai_budget_policy == "highest"
    path = Path(str(tmp_path)) / "c.yaml"
    path.write_text("aibridge:\n  budget_policy: highest\n"
                    "  budgets:\n    - {group: crew, period: month, limit_usd: 5}\n"
                    "  model_rules:\n    allow:\n      - {group: crew, models: [claude-*]}\n")
    settings = load_settings({}, env={}, config_path=str(path))
    assert settings.ai_budget_policy == "highest"
    assert parse_configured(settings.governance).budgets[("group", "crew")].limit_usd == 5
    with pytest.raises(ConfigError, match="CODER_AI_BUDGET_POLICY: invalid budget policy 'lowest'"):
        load_settings({}, env={"CODER_AI_BUDGET_POLICY": "lowest"})


@pytest.mark.parametrize(("doc", "message"), [
    ({"budgets": [{"role": "member", "user": "x", "period": "day", "limit_usd": 1}]},
     r"config aibridge.budgets\[0\]: name exactly one of user, group or role"),
    ({"budgets": [{"role": "wizard", "period": "day", "limit_usd": 1}]}, "unknown role 'wizard'"),
    ({"budgets": [{"role": "member", "period": "day", "limit_usd": -1}]}, "limit_usd must be a non-negative"),
    ({"prices": {"m": {"input": 1}}}, "config aibridge.prices.m: output is required"),
    ({"model_rules": {"allow": [{"role": "member", "models": "claude-*"}]}}, "models must be a list"),
    ({"model_rules": {"aliases": [{"from": "a"}]}}, "from and to are model names"),
    ({"budgets": {"role": "member"}}, "must be a list of mappings"),
])
def test_bad_yaml_rules_name_the_option(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_configured(doc)


def test_settings_carry_the_yaml_rules(tmp_path: object) -> None:
    from pathlib import Path
    path = Path(str(tmp_path)) / "c.yaml"
    path.write_text("aibridge:\n  budgets:\n    - {role: member, period: day, limit_usd: 3}\n  retention: 1d\n")
    settings = load_settings({}, env={}, config_path=str(path))
    assert settings.governance == {"budgets": [{"role": "member", "period": "day", "limit_usd": 3}]}
    assert settings.aibridge_budget_max_reservation == 1.0 and settings.aibridge_budget_output_estimate == 4096


# ---------------------------------------------------------------- the ledger on real databases

@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    url = (postgres_async_url(database.postgres.url) if database.postgres
           else f"sqlite+aiosqlite:///{database.data_dir / 'aibridge.db'}")
    eng = create_engine(url)
    await migrate(eng)
    yield eng
    await eng.dispose()


async def test_concurrent_reservations_never_overcommit(engine: AsyncEngine) -> None:
    user = await user_store.create_user(engine, f"u{uuid.uuid4().hex[:8]}", "member")
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    limit, amount = 1_000_000, 30_000            # $1, $0.03 each: 33 fit

    results = await asyncio.gather(*(store.reserve(engine, user.id, "month", start, amount, limit)
                                     for _ in range(60)))
    admitted = sum(ok for ok, _ in results)
    assert admitted == 33
    held = await store.ledger(engine, user.id, "month", start)
    assert held == store.Ledger(0, 33 * amount)

    # Settle every admitted request at a real cost below its reservation: nothing is left held.
    spent = 0
    for _ in range(admitted):
        spent = await store.settle(engine, user.id, "month", start, amount, 20_000)
    assert spent == 33 * 20_000 and await store.ledger(engine, user.id, "month", start) == store.Ledger(660_000, 0)


async def test_one_request_at_a_time_while_the_budget_is_not_used_up(engine: AsyncEngine) -> None:
    user = await user_store.create_user(engine, f"u{uuid.uuid4().hex[:8]}", "member")
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    limit = 1_000_000
    await store.reserve(engine, user.id, "month", start, 0, limit)
    await store.settle(engine, user.id, "month", start, 0, 990_000)          # $0.99 spent
    results = await asyncio.gather(*(store.reserve(engine, user.id, "month", start, 50_000, limit)
                                     for _ in range(20)))
    assert sum(ok for ok, _ in results) == 1                                 # more than is left, but alone
    assert await store.settle(engine, user.id, "month", start, 50_000, 40_000) == 1_030_000
    ok, ledger = await store.reserve(engine, user.id, "month", start, 1, limit)
    assert not ok and ledger == store.Ledger(1_030_000, 0)                   # used up: nothing goes through
    assert await store.mark_notified(engine, user.id, "month", start, 100)
    assert not await store.mark_notified(engine, user.id, "month", start, 100)   # reported once
    assert not await store.mark_notified(engine, user.id, "month", start, 85)


async def test_a_new_ledger_period_starts_from_the_recorded_spend(engine: AsyncEngine) -> None:
    """A budget set mid-period counts what the user spent before it, as the spend export does."""
    from aibridge.store.schema import interceptions

    user = await user_store.create_user(engine, f"u{uuid.uuid4().hex[:8]}", "member")
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    async with engine.begin() as conn:
        for when, cost in ((start - dt.timedelta(hours=1), 9.0), (start + dt.timedelta(days=2), 0.25),
                           (start + dt.timedelta(days=3), 0.5), (start + dt.timedelta(days=4), None)):
            await conn.execute(interceptions.insert().values(
                id=uuid.uuid4(), initiator_id=user.id, provider="openai", provider_name="openai", model="m",
                started_at=when, ended_at=when, cost_usd=cost))
    ok, ledger = await store.reserve(engine, user.id, "month", start, 10_000, 1_000_000)
    assert ok and ledger == store.Ledger(750_000, 10_000)                  # last month's $9 is not in it
    assert await store.spent_usd(engine, user.id, start, dt.datetime(2027, 1, 1, tzinfo=dt.UTC)) == 0.75
