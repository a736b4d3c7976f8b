"""A session's bounded queue of messages waiting for a transport to take them."""

from __future__ import annotations

import enum
from collections.abc import Iterator


class Offer(enum.Enum):
    """What :meth:`Outbox.offer` did with a message."""

    QUEUED = "queued"
    DROPPED_OLDEST = "dropped_oldest"  # queued, after discarding the head
    REFUSED = "refused"  # the queue is full and the policy keeps what it has


_QUEUED = Offer.QUEUED  # a global read costs less than an enum member's, on every push


def when_full(size: int, max_chars: int, *, drop_oldest: bool) -> Offer:
    """What a full queue does with a message of ``size`` characters: the one overflow rule.

    Every bounded queue applies it, in memory (:class:`Outbox`) and in a shared
    store (the Redis queue): drop messages from the head until the new one
    fits (DROPPED_OLDEST), unless the policy keeps what is queued, or the
    message could never fit however much is dropped (REFUSED). Overflow.CLOSE
    and Overflow.DROP_NEWEST both refuse; closing is the caller's part.
    """
    if drop_oldest and size <= max_chars:
        return Offer.DROPPED_OLDEST
    return Offer.REFUSED


class Outbox:
    """FIFO bounded in message count and total characters (code points, ``len``).

    ``drop_oldest`` chooses the policy on overflow; ``False`` refuses the new
    message and lets the caller decide (drop it, or close the session).
    A message put back with :meth:`requeue` (a write that failed) is never
    refused: it was already counted once and must not be lost.

    The queue is a plain list read from a moving head, not a deque: an empty
    list holds no item array, while an empty deque keeps a 64-slot block (about
    600 bytes) for the life of every session, and a session's queue is empty
    nearly always. Taken slots are dropped in one slice once they are half the
    list, so taking stays O(1) amortised.
    """

    __slots__ = ("_chars", "_head", "_items", "dropped", "max_chars", "max_messages")

    def __init__(self, max_messages: int, max_chars: int) -> None:
        self._items: list[str] = []
        self._head = 0  # index of the oldest message in _items
        self._chars = 0
        self.max_messages = max_messages
        self.max_chars = max_chars
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items) - self._head

    def __bool__(self) -> bool:
        return len(self._items) > self._head

    def __iter__(self) -> Iterator[str]:
        return iter(self._items[self._head :])

    @property
    def chars(self) -> int:
        return self._chars

    def _fits(self, size: int) -> bool:
        return len(self) < self.max_messages and self._chars + size <= self.max_chars

    def offer(self, message: str, *, drop_oldest: bool) -> Offer:
        """Append ``message`` if the bounds allow, else apply the policy."""
        size = len(message)
        items = self._items
        # _fits(), written out: this runs for every message pushed.
        if len(items) - self._head < self.max_messages and self._chars + size <= self.max_chars:
            items.append(message)
            self._chars += size
            return _QUEUED
        if when_full(size, self.max_chars, drop_oldest=drop_oldest) is Offer.REFUSED:
            self.dropped += 1
            return Offer.REFUSED
        while self and not self._fits(size):
            self.take()
            self.dropped += 1
        self._items.append(message)
        self._chars += size
        return Offer.DROPPED_OLDEST

    def take(self) -> str | None:
        """Remove and return the head, or None when empty."""
        items = self._items
        head = self._head
        if head >= len(items):
            return None
        message = items[head]
        items[head] = ""  # do not keep a taken message alive
        head += 1
        if head == len(items):
            items.clear()
            head = 0
        elif head >= 16 and 2 * head >= len(items):
            del items[:head]
            head = 0
        self._head = head
        self._chars -= len(message)
        return message

    def peek(self) -> str | None:
        return self._items[self._head] if self else None

    def requeue(self, message: str) -> None:
        """Put back a message whose delivery failed, ahead of everything else."""
        if self._head:
            self._head -= 1
            self._items[self._head] = message
        else:
            self._items.insert(0, message)
        self._chars += len(message)

    def clear(self) -> int:
        """Empty the queue; return how many messages were discarded."""
        count = len(self)
        self._items.clear()
        self._head = 0
        self._chars = 0
        return count
