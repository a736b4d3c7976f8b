"""Token buckets against POST floods (docs/robustness.md item 47), without a clock."""

from __future__ import annotations

import pytest

from bullet_py.core.ratelimit import RateLimiter


def test_burst_then_rate() -> None:
    limiter = RateLimiter(rate=10)
    assert all(limiter.allow("s", 0.0) for _ in range(10))  # a burst of one second's worth
    assert not limiter.allow("s", 0.0)
    assert limiter.allow("s", 0.1)  # one token back after 1/rate seconds
    assert not limiter.allow("s", 0.1)


def test_keys_are_independent_and_bounded() -> None:
    limiter = RateLimiter(rate=1, max_keys=3)
    assert limiter.allow("a", 0.0) and not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)
    for key in "cdef":
        limiter.allow(key, 0.0)
    assert len(limiter) == 3  # least recently used forgotten first
    assert limiter.allow("a", 0.0)  # forgotten, so it starts again with a full bucket


def test_refill_is_capped_at_the_burst() -> None:
    limiter = RateLimiter(rate=2, burst=2)
    assert limiter.allow("k", 0.0)
    granted = sum(limiter.allow("k", 1000.0) for _ in range(10))
    assert granted == 2


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0)


def test_quiet_keys_are_forgotten_once_refilled() -> None:
    limiter = RateLimiter(rate=10)
    for i in range(100):
        limiter.allow(f"session{i}", i * 0.01)
    assert len(limiter) <= 11  # refilled buckets went away as new keys came, one per call
    for _ in range(10):
        limiter.allow("later", 100.0)
    assert len(limiter) == 1  # only the key still in use is left


# --- one bucket per connection, and the message budget (items 75-77) -------------


def test_token_bucket_burst_then_rate() -> None:
    from bullet_py.core.ratelimit import TokenBucket

    bucket = TokenBucket(rate=2, burst=4)
    assert all(bucket.spend(0.0) for _ in range(4))
    assert not bucket.spend(0.0)
    assert bucket.spend(0.5)  # one token back after 1/rate seconds
    assert not bucket.spend(0.5)
    assert all(bucket.spend(100.0) for _ in range(4))  # refilled, capped at the burst
    assert not bucket.spend(100.0)


def test_token_bucket_refuses_bad_settings() -> None:
    from bullet_py.core.ratelimit import TokenBucket

    with pytest.raises(ValueError):
        TokenBucket(rate=0)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0.5)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0.5)


def test_message_budget_counts_messages_and_control_frames_apart() -> None:
    from bullet_py.core.ratelimit import MessageBudget, Spend

    budget = MessageBudget((1.0, 3.0), (1.0, 1.0))
    assert [budget.message(0.0) for _ in range(4)] == [Spend.OK] * 3 + [Spend.MESSAGES]
    assert budget.control_frame(0.0) is Spend.OK
    assert budget.control_frame(0.0) is Spend.CONTROL
    assert Spend.MESSAGES.value == "ws_messages" and Spend.CONTROL.value == "ws_control"


def test_message_budget_off_is_unlimited() -> None:
    from bullet_py.core.ratelimit import MessageBudget, Spend, limiter

    budget = MessageBudget((None, None))
    assert all(budget.message(0.0) is Spend.OK for _ in range(10_000))
    assert all(budget.control_frame(0.0) is Spend.OK for _ in range(10_000))
    assert limiter(None) is None
    table = limiter(1.0, 2.0)
    assert table is not None and table.burst == 2.0
