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
