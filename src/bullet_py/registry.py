"""The sessions of one endpoint in this process: lookup, groups, expiry, limits.

Session ids come from :mod:`secrets` (192 bits). An id handed to a polling
client that has not come back yet is only *pending*: a dict entry with a time,
no handler, so clients with cookies off (or an attacker) cost almost nothing
and are forgotten after ``pending_session_ttl``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from .config import Options
from .connection import CloseReason
from .core.fairshare import Room, make_room
from .logs import log_event

if TYPE_CHECKING:
    from .connection import Connection

logger = logging.getLogger("bullet_py")

#: How many of an address's newest sessions are looked at for one to evict.
_EVICTION_SCAN = 64


def new_session_id() -> str:
    """A fresh unguessable id (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


class Registry:
    """Live and pending sessions, and group membership."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._sessions: dict[str, Connection] = {}
        # address -> its live sessions, oldest first: fair shares when full
        self._by_address: dict[str, dict[str, Connection]] = {}
        self._pending: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._groups: dict[str, set[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self.opened = 0  # sessions ever opened, for tests and figures
        self.finished = 0

    # --- sessions -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str | None) -> Connection | None:
        if not session_id:
            return None
        return self._sessions.get(session_id)

    @property
    def full(self) -> bool:
        return len(self._sessions) >= self.options.max_sessions

    def add(self, conn: Connection) -> None:
        self._sessions[conn.session_id] = conn
        self._by_address.setdefault(conn.address, {})[conn.session_id] = conn
        self._empty.clear()
        self.opened += 1

    def remove(self, conn: Connection) -> None:
        if self._sessions.get(conn.session_id) is conn:
            del self._sessions[conn.session_id]
            held = self._by_address.get(conn.address)
            if held is not None:
                held.pop(conn.session_id, None)
                if not held:
                    del self._by_address[conn.address]
            self.finished += 1
            if not self._sessions:
                self._empty.set()
        for group in list(conn.groups):
            self.leave(conn, group)

    def held_by(self, address: str) -> int:
        """Live sessions made from ``address``."""
        return len(self._by_address.get(address, ()))

    def make_room(self, address: str) -> Room:
        """May ``address`` start a session? Evicts to make room if fair (core.fairshare).

        Returns ADMIT (there is room now, perhaps after an eviction) or the refusal.
        """
        opts = self.options
        held = self.held_by(address)
        total = len(self._sessions)
        heaviest_address, heaviest = None, 0
        if total >= opts.max_sessions:
            for other, sessions in self._by_address.items():
                if len(sessions) > heaviest:
                    heaviest_address, heaviest = other, len(sessions)
        room = make_room(
            held=held,
            total=total,
            capacity=opts.max_sessions,
            addresses=len(self._by_address),
            heaviest=heaviest,
            per_address=opts.max_sessions_per_address,
        )
        if room is not Room.EVICT:
            return room
        assert heaviest_address is not None
        victim = self._newest_anonymous(heaviest_address)
        if victim is None:
            return Room.REFUSE_FULL
        log_event(logging.INFO, "session_evicted", transport=victim.transport.value)
        victim.close(CloseReason.POLICY)
        self.remove(victim)  # its place is free now; finish() runs on_close later
        return Room.ADMIT

    def _newest_anonymous(self, address: str) -> Connection | None:
        """The newest evictable session of ``address`` among its newest few (bounded work)."""
        for tried, conn in enumerate(reversed(self._by_address[address].values())):
            if tried >= _EVICTION_SCAN:
                break
            if conn.anonymous and not conn.closed:
                return conn
        return None

    # --- pending polling sessions -------------------------------------------

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def issue_pending(self, session_id: str | None = None) -> str:
        """An id for a polling client (new unless given), kept until it comes back or expires."""
        session_id = session_id or new_session_id()
        while len(self._pending) >= self.options.max_pending_sessions:
            self._pending.popitem(last=False)
        self._pending[session_id] = time.monotonic()
        return session_id

    def claim_pending(self, session_id: str | None) -> bool:
        """True once for an id this process issued and that has not expired."""
        if not session_id:
            return False
        issued = self._pending.pop(session_id, None)
        if issued is None:
            return False
        return time.monotonic() - issued < self.options.pending_session_ttl

    # --- groups -------------------------------------------------------------

    def join(self, conn: Connection, group: str) -> None:
        self._groups.setdefault(group, set()).add(conn.session_id)
        conn.groups.add(group)

    def leave(self, conn: Connection, group: str) -> None:
        conn.groups.discard(group)
        members = self._groups.get(group)
        if members is not None:
            members.discard(conn.session_id)
            if not members:
                del self._groups[group]

    def members(self, group: str | None) -> list[Connection]:
        """The sessions of ``group``, or every session when ``group`` is None."""
        if group is None:
            return list(self._sessions.values())
        ids = self._groups.get(group, ())
        return [self._sessions[i] for i in ids if i in self._sessions]

    # --- background work ----------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until every session has finished; False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True

    async def drain_tasks(self, timeout: float) -> None:
        """Wait for background work (close callbacks) to end, up to ``timeout``."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def sweep(self) -> int:
        """Close idle polling sessions and forget expired pending ids; how many closed."""
        now = time.monotonic()
        ttl = self.options.pending_session_ttl
        while self._pending:
            session_id, issued = next(iter(self._pending.items()))
            if now - issued < ttl:
                break
            del self._pending[session_id]
        idle = self.options.session_idle_timeout
        closed = 0
        for conn in list(self._sessions.values()):
            if not conn.may_expire:
                continue
            if now - conn.last_active >= idle:
                log_event(logging.INFO, "session_expired", transport=conn.transport.value)
                conn.close()
                closed += 1
        return closed
