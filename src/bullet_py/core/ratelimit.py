"""Token buckets: one per connection, or a table of them by key (no I/O, no clock).

One rule everywhere (docs/robustness.md items 47 and 75-77): a key may spend
``rate`` tokens a second with bursts up to ``burst``; the caller passes a
monotonic ``now``. :class:`TokenBucket` is one bucket (a connection's own
budget), :class:`RateLimiter` a table of them keyed by session, cookie or
address, which forgets keys least recently used first beyond ``max_keys``
(and keys whose bucket has refilled), so rotating cookies or addresses cannot
grow it without bound. :class:`MessageBudget` is the per-session policy every
transport applies to what the client sends: messages (WebSocket frames,
``POST`` bodies) and control frames.
"""

from __future__ import annotations

import collections
import enum


def _refill(tokens: float, last: float, now: float, rate: float, burst: float) -> float:
    return min(burst, tokens + (now - last) * rate)


class TokenBucket:
    """``spend(now)`` is True while the bucket has a token; starts full."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        if self.burst < 1.0:
            raise ValueError("burst must be >= 1")
        self.tokens = self.burst
        self.last = float("-inf")

    def spend(self, now: float) -> bool:
        tokens = _refill(self.tokens, self.last, now, self.rate, self.burst)
        self.last = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


class RateLimiter:
    """``allow(key, now)`` is True while ``key`` is within its rate."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float | None = None, max_keys: int = 10_000) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        if self.burst < 1.0:
            raise ValueError("burst must be >= 1")
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
            tokens = _refill(entry[0], entry[1], now, self.rate, self.burst)
            self._buckets.move_to_end(key)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def would_allow(self, key: str, now: float) -> bool:
        """Whether ``allow(key, now)`` would be True, spending nothing."""
        entry = self._buckets.get(key)
        if entry is None:
            return True  # a new key starts with a full bucket (burst >= 1)
        return _refill(entry[0], entry[1], now, self.rate, self.burst) >= 1.0

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


def limiter(rate: float | None, burst: float | None = None) -> RateLimiter | None:
    """A keyed table for an option pair; None when the option is off."""
    return None if rate is None else RateLimiter(rate, burst)


class Spend(enum.Enum):
    """What one frame from the client costs against its session's budget."""

    OK = "ok"
    MESSAGES = "ws_messages"  # over the message budget (the log line's reason)
    CONTROL = "ws_control"  # over the control-frame budget


class MessageBudget:
    """The per-session budget of what a client sends: messages and control frames.

    Built from the options' rate and burst pairs (None: unlimited); the
    WebSocket reader spends from it per frame, and ``POST`` bodies per
    session are the same bucket kept in a :class:`RateLimiter` keyed by
    session, since a ``POST`` may reach a process where its session does not
    live.
    """

    __slots__ = ("control", "messages")

    def __init__(
        self,
        messages: tuple[float | None, float | None],
        control: tuple[float | None, float | None] = (None, None),
    ) -> None:
        rate, burst = messages
        self.messages = None if rate is None else TokenBucket(rate, burst)
        rate, burst = control
        self.control = None if rate is None else TokenBucket(rate, burst)

    def message(self, now: float) -> Spend:
        bucket = self.messages
        if bucket is None or bucket.spend(now):
            return Spend.OK
        return Spend.MESSAGES

    def control_frame(self, now: float) -> Spend:
        bucket = self.control
        if bucket is None or bucket.spend(now):
            return Spend.OK
        return Spend.CONTROL
