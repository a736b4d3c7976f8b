"""A session's bounded queue of messages waiting for a transport to take them."""

from __future__ import annotations

import collections
import enum
from collections.abc import Iterator


class Offer(enum.Enum):
    """What :meth:`Outbox.offer` did with a message."""

    QUEUED = "queued"
    DROPPED_OLDEST = "dropped_oldest"  # queued, after discarding the head
    REFUSED = "refused"  # the queue is full and the policy keeps what it has


class Outbox:
    """FIFO bounded in message count and total characters.

    ``drop_oldest`` chooses the policy on overflow; ``False`` refuses the new
    message and lets the caller decide (drop it, or close the session).
    A message put back with :meth:`requeue` (a write that failed) is never
    refused: it was already counted once and must not be lost.
    """

    __slots__ = ("_chars", "_items", "dropped", "max_chars", "max_messages")

    def __init__(self, max_messages: int, max_chars: int) -> None:
        self._items: collections.deque[str] = collections.deque()
        self._chars = 0
        self.max_messages = max_messages
        self.max_chars = max_chars
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    @property
    def chars(self) -> int:
        return self._chars

    def _fits(self, size: int) -> bool:
        return len(self._items) < self.max_messages and self._chars + size <= self.max_chars

    def offer(self, message: str, *, drop_oldest: bool) -> Offer:
        """Append ``message`` if the bounds allow, else apply the policy."""
        size = len(message)
        if self._fits(size):
            self._items.append(message)
            self._chars += size
            return Offer.QUEUED
        if not drop_oldest or size > self.max_chars:
            self.dropped += 1
            return Offer.REFUSED
        while self._items and not self._fits(size):
            self._chars -= len(self._items.popleft())
            self.dropped += 1
        self._items.append(message)
        self._chars += size
        return Offer.DROPPED_OLDEST

    def take(self) -> str | None:
        """Remove and return the head, or None when empty."""
        if not self._items:
            return None
        message = self._items.popleft()
        self._chars -= len(message)
        return message

    def peek(self) -> str | None:
        return self._items[0] if self._items else None

    def requeue(self, message: str) -> None:
        """Put back a message whose delivery failed, ahead of everything else."""
        self._items.appendleft(message)
        self._chars += len(message)

    def clear(self) -> int:
        """Empty the queue; return how many messages were discarded."""
        count = len(self._items)
        self._items.clear()
        self._chars = 0
        return count
