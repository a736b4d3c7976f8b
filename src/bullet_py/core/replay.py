"""What a session sent and its client has not yet acknowledged, to send again after a drop.

A client that counts the messages it received in its session (the project's
``js/bullet.js`` does; the original client does not) reports the count when it
reconnects, and on every poll. Whatever was sent after that count never
arrived (the connection died with it in flight, or in the kernel's buffer)
and is sent again, first, in order. The buffer keeps the most recent messages
only, within a bound: a count older than what it still holds is a gap the
server cannot fill, and the client is told to start afresh rather than get a
silent hole.
"""

from __future__ import annotations


class Replay:
    """The last messages sent in a session, numbered from 1, bounded in count and characters."""

    __slots__ = ("_chars", "_items", "max_chars", "max_messages", "sent")

    def __init__(self, max_messages: int, max_chars: int) -> None:
        self.sent = 0  # messages sent in the session so far
        self._items: list[str] = []  # the last ones sent, oldest first
        self._chars = 0
        self.max_messages = max_messages
        self.max_chars = max_chars

    def __len__(self) -> int:
        return len(self._items)

    def kept(self) -> list[str]:
        """The messages kept, oldest first (the last ``len(self)`` of ``sent``)."""
        return list(self._items)

    def record(self, message: str) -> None:
        """One more message went to the client (the oldest kept ones may be forgotten)."""
        self.sent += 1
        items = self._items
        items.append(message)
        self._chars += len(message)
        if len(items) > self.max_messages or self._chars > self.max_chars:
            drop = 0
            chars = self._chars
            while drop < len(items) and (
                len(items) - drop > self.max_messages or chars > self.max_chars
            ):
                chars -= len(items[drop])
                drop += 1
            del items[:drop]
            self._chars = chars

    def unrecord(self) -> None:
        """The last recorded message was not written after all (it goes back to the queue)."""
        if self._items:
            self._chars -= len(self._items.pop())
        self.sent = max(0, self.sent - 1)

    def rewind(self, seen: int) -> list[str] | None:
        """The client received ``seen`` messages: what it missed, in order, or None for a gap.

        None when ``seen`` is not a count this session could have (negative,
        or more than was sent), or when what it missed is no longer all kept.
        On success everything up to ``seen`` is forgotten and the count goes
        back to ``seen``: the missed messages are counted again when resent.
        """
        if seen < 0 or seen > self.sent:
            return None
        missed = self.sent - seen
        items = self._items
        if missed > len(items):
            return None
        again = items[len(items) - missed :] if missed else []
        items.clear()
        self._chars = 0
        self.sent = seen
        return again
