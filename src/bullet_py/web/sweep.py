"""One timer for every WebSocket keep-alive of an endpoint, instead of one per socket.

A timer per socket is an object the loop holds (a handle, a bound method, a
context), re-armed every interval, for a socket that is idle nearly always.
A sweep holds a set of the checks and one timer: every ``interval / TICKS``
seconds it hands each check the time, and a check decides from its own
state (last activity, when it pinged) whether to ping or drop. A check is
never late by more than one tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

logger = logging.getLogger("bullet_py")

#: Sweeps per interval: a peer quiet for ``interval`` is pinged within a
#: quarter of an interval, and dropped a half to three quarters of an
#: interval after the ping when nothing comes back.
TICKS = 4


class Check(Protocol):
    def check(self, now: float) -> None:
        """Ping, drop or wait, as of ``now`` (``time.monotonic()``)."""


class Sweep:
    """The checks of one endpoint, and the timer that runs them while there are any."""

    __slots__ = ("_handle", "_loop", "members", "tick")

    def __init__(self, interval: float) -> None:
        self.tick = interval / TICKS
        self.members: set[Check] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, member: Check) -> None:
        self.members.add(member)
        loop = asyncio.get_running_loop()
        if self._handle is None or self._loop is not loop:  # none yet, or a loop gone
            self._loop = loop
            self._handle = loop.call_later(self.tick, self._sweep)

    def discard(self, member: Check) -> None:
        self.members.discard(member)
        if not self.members and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self) -> None:
        self._handle = None
        now = time.monotonic()
        for member in list(self.members):  # a check may drop its socket, and leave
            try:
                member.check(now)
            except Exception:  # one broken check must not stop the others'
                logger.exception("keep-alive check failed")
        if self.members and self._loop is not None and self._handle is None:
            self._handle = self._loop.call_later(self.tick, self._sweep)
