"""The provider key pool: turns, cooldowns (Retry-After), exhaustion, hints."""

from __future__ import annotations

import email.utils

import pytest

from aibridge.bridge.providers.keypool import (
    AUTH_COOLDOWN,
    RATE_LIMIT_COOLDOWN,
    KeyPool,
    key_hint,
    retry_after_seconds,
    split_keys,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_split_keys() -> None:
    assert split_keys(" sk-a, sk-b ,,sk-a ") == ["sk-a", "sk-b"]
    assert split_keys("sk-only") == ["sk-only"]
    assert split_keys(" , ") == []


def test_hint_is_stable_and_never_the_key() -> None:
    key = "sk-proj-abcdefghijklmnop"
    assert key_hint(key) == key_hint(key) and len(key_hint(key)) == 8
    assert key_hint(key) not in key and key_hint(key) != key_hint("sk-proj-abcdefghijklmnoq")


def test_retry_after_seconds_and_http_dates() -> None:
    assert retry_after_seconds({"retry-after": "17"}) == 17
    assert retry_after_seconds({"Retry-After": "1.5"}) == 1.5
    date = email.utils.formatdate(2_000_000_030, usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now=2_000_000_000) == pytest.approx(30)
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "soon"}) is None


def test_keys_are_taken_in_turn() -> None:
    pool = KeyPool("openai", ["a", "b", "c"], Clock())
    assert [pool.order()[0] for _ in range(4)] == [0, 1, 2, 0]
    assert pool.order() == [1, 2, 0]


def test_a_rate_limited_key_cools_for_retry_after() -> None:
    clock = Clock()
    pool = KeyPool("openai", ["a", "b"], clock)
    pool.cool(0, 429, {"retry-after": "20"})
    assert all(0 not in pool.order() for _ in range(3))
    assert pool.cooldowns == {key_hint("a"): 1}
    clock.now += 20
    assert 0 in pool.order()


def test_default_cooldowns_and_exhaustion() -> None:
    clock = Clock()
    pool = KeyPool("anthropic", ["a", "b"], clock)
    pool.cool(0, 429, {})
    pool.cool(1, 401, {})
    assert pool.order() == [] and not pool.all_refused()
    assert pool.retry_after() == RATE_LIMIT_COOLDOWN          # the rate-limited key comes back first
    clock.now += RATE_LIMIT_COOLDOWN
    assert pool.order() == [0]
    pool.cool(0, 401, {})
    assert pool.all_refused() and pool.retry_after() == AUTH_COOLDOWN - RATE_LIMIT_COOLDOWN   # key 1 first


def test_one_key_is_always_tried() -> None:
    pool = KeyPool("openai", ["only"], Clock())
    pool.cool(0, 429, {"retry-after": "60"})
    assert not pool.pooled and pool.order() == [0]
