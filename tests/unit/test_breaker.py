"""The circuit breaker's half-open trials, driven in-process with fake flows."""

from __future__ import annotations

import asyncio

import pytest

from aibridge.bridge.flow import Addon, Addons, Flow, Reject
from aibridge.resilience.breaker import TRIAL, CircuitBreakerAddon
from tests.unit.test_observability import make_flow

TIMEOUT = 0.05


class RefuseAll(Addon):
    """A guard after the breaker that refuses every request (like a rate limit would)."""

    async def admit(self, flow: Flow) -> None:
        raise Reject(429, "no", reason="rate_limit")


async def half_open(breaker: CircuitBreakerAddon) -> None:
    """One failure opens the circuit (threshold 1); after its timeout the next request is a trial."""
    failed = make_flow()
    await breaker.admit(failed)
    failed.upstream_status = 500
    breaker.interception_ended(failed)
    with pytest.raises(Reject):
        await breaker.admit(make_flow())
    await asyncio.sleep(TIMEOUT * 1.5)


async def test_a_refused_trial_gives_its_slot_back() -> None:
    breaker = CircuitBreakerAddon(failure_threshold=1, interval=10, timeout=TIMEOUT, max_requests=1)
    await half_open(breaker)
    with pytest.raises(Reject) as refused:
        await Addons([breaker, RefuseAll()]).admit(make_flow())
    assert refused.value.reason == "rate_limit"       # the trial was admitted, then a later guard refused it
    trial = make_flow()
    await breaker.admit(trial)                        # the slot is free again: another trial may run
    assert trial.get(TRIAL)


async def test_a_trial_whose_client_went_away_is_not_a_success() -> None:
    breaker = CircuitBreakerAddon(failure_threshold=1, interval=10, timeout=TIMEOUT, max_requests=1)
    await half_open(breaker)
    abandoned = make_flow()
    await breaker.admit(abandoned)
    assert abandoned.get(TRIAL)
    abandoned.fail("canceled", "the client disconnected")
    breaker.interception_ended(abandoned)
    trial = make_flow()
    await breaker.admit(trial)                        # still half-open, and the slot is free again
    assert trial.get(TRIAL)
    trial.upstream_status = 502
    breaker.interception_ended(trial)
    with pytest.raises(Reject) as refused:
        await breaker.admit(make_flow())
    assert refused.value.reason == "circuit_open"
