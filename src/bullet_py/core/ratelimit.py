"""Token buckets keyed by session or client address, bounded in memory (no I/O, no clock).

Used against POST floods (docs/robustness.md item 47): each key may spend ``rate``
requests a second with bursts up to ``burst``. Keys are forgotten least
recently used first beyond ``max_keys``, so rotating cookies or addresses
cannot grow the table without bound.
"""

from __future__ import annotations

import collections


class RateLimiter:
    """``allow(key, now)`` is True while ``key`` is within its rate."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float | None = None, max_keys: int = 10_000) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self.max_keys = max_keys
        # key -> (tokens left, time of the last refill)
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> bool:
        """Spend one token of ``key`` if it has one; ``now`` is a monotonic time in seconds."""
        self._forget_one_idle(key, now)
        entry = self._buckets.get(key)
        if entry is None:
            tokens = self.burst
            while len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
        else:
            tokens, last = entry
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            self._buckets.move_to_end(key)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def _forget_one_idle(self, key: str, now: float) -> None:
        """Drop the least recently used key if its bucket has refilled: a full bucket is
        the same as no entry, so keys that went quiet cost nothing (amortised O(1))."""
        if not self._buckets:
            return
        oldest = next(iter(self._buckets))
        if oldest == key:
            return
        tokens, last = self._buckets[oldest]
        if tokens + (now - last) * self.rate >= self.burst:
            del self._buckets[oldest]
