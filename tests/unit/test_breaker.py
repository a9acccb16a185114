"""The circuit breaker's half-open trials, driven in-process with fake flows."""

from __future__ import annotations

import asyncio

import pytest

from aibridge.bridge.credentials import CENTRALIZED, own_credential
from aibridge.bridge.flow import Addon, Addons, Flow, Reject
from aibridge.resilience.breaker import TRIAL, CircuitBreakerAddon
from aibridge.resilience.shared import CircuitTable
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


async def test_trials_that_never_answer_are_replaced_after_the_timeout() -> None:
    """A worker that died during its trials never reports them: the circuit does not stay half-open."""
    breaker = CircuitBreakerAddon(failure_threshold=1, interval=10, timeout=TIMEOUT, max_requests=1)
    await half_open(breaker)
    lost = make_flow()
    await breaker.admit(lost)
    assert lost.get(TRIAL)
    with pytest.raises(Reject):
        await breaker.admit(make_flow())
    await asyncio.sleep(TIMEOUT * 1.5)
    trial = make_flow()
    await breaker.admit(trial)
    assert trial.get(TRIAL)
    breaker.interception_ended(trial)
    assert breaker.state(("anthropic", "/v1/messages", "claude-sonnet-4-5")) == 0.0      # closed


async def test_circuits_in_a_shared_table_are_seen_by_every_breaker() -> None:
    """Two breakers on one table (two workers): one's failures open the circuit for the other."""
    table = CircuitTable()
    first, second = (CircuitBreakerAddon(failure_threshold=2, interval=10, timeout=30, max_requests=1, table=table)
                     for _ in range(2))
    for breaker in (first, second):
        failed = make_flow()
        await breaker.admit(failed)
        failed.upstream_status = 503
        breaker.interception_ended(failed)
    for breaker in (first, second):
        with pytest.raises(Reject):
            await breaker.admit(make_flow())
    assert first.trips == {} and second.trips == {("anthropic", "/v1/messages", "claude-sonnet-4-5"): 1}


async def test_a_byok_users_own_rate_limit_does_not_open_the_shared_circuit() -> None:
    """A 429 answered to a user's own key is that key's limit, not the upstream's health: it must
    not refuse everyone else's requests. A BYOK 5xx still counts."""
    breaker = CircuitBreakerAddon(failure_threshold=1, interval=10, timeout=10, max_requests=1)
    limited = make_flow()
    limited.credential = own_credential({"X-Api-Key": "sk-ant-api03-someone-elses-own-key"}) or CENTRALIZED
    assert limited.credential.byok
    await breaker.admit(limited)
    limited.upstream_status = 429
    breaker.interception_ended(limited)
    await breaker.admit(make_flow())                  # still closed
    broken = make_flow()
    broken.credential = limited.credential
    await breaker.admit(broken)
    broken.upstream_status = 503
    breaker.interception_ended(broken)
    with pytest.raises(Reject):
        await breaker.admit(make_flow())
