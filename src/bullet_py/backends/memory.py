"""The single-process default: nobody else to tell, and every session is here."""

from __future__ import annotations

from collections.abc import Callable, Collection

from ..config import Options
from ..exceptions import SessionNotFound
from ..registry import Registry
from .base import Broker, Deliver, Envelope, LocalSessions, Located, Placement, SessionStore, Taken


class MemoryBroker(Broker):
    """A broker for one process; every session is local, so publishing is a no-op."""

    async def start(self, deliver: Deliver) -> None:
        return None

    async def publish(self, envelope: Envelope) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def distributed(self) -> bool:
        return False


class MemoryStore(SessionStore):
    """The store of one process: the registry's pending ids and sessions.

    A session's queue is the session's own outbox, so pushes never pass
    through here (:attr:`holds_queues` is False); a poll takes from it with
    :meth:`take`, which parks the poll on the session itself. With a shared
    store, the endpoint still has one of these for the sessions whose queue
    stays in the process (a stream's session polled after a CR fallback).
    """

    holds_queues = False

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def bind(self, sessions: LocalSessions, options: Options) -> None:
        return None

    async def issue(self, session_id: str) -> None:
        self._registry.issue_pending(session_id)

    async def locate(self, session_id: str) -> Located:
        conn = self._registry.get(session_id)
        if conn is not None and not conn.closed:
            return _HERE
        if self._registry.claim_pending(session_id):
            return _CLAIMED
        return _UNKNOWN

    def adopt(self, session_id: str, *, queued: bool) -> None:
        return None

    def push(self, session_id: str, message: str) -> bool:
        conn = self._registry.get(session_id)
        return conn is not None and conn.send(message)

    async def take(
        self, session_id: str, timeout: float, alive: Callable[[], bool]
    ) -> Taken | None:
        conn = self._registry.get(session_id)
        if conn is None:
            return None
        # conn.poll() inlined: one coroutine frame fewer per parked poll.
        waiting = conn.park_poll(timeout, alive)
        if waiting is None or isinstance(waiting, str):
            message = waiting
        else:
            try:
                message = await waiting
            except BaseException:
                conn.give_back(waiting)
                raise
        return None if message is None else Taken(session_id, message, "")

    def ack(self, taken: Taken) -> None:
        return None

    def requeue(self, taken: Taken) -> None:
        conn = self._registry.get(taken.session_id)
        if conn is not None:
            conn.requeue(taken.message)

    async def forward(self, home: str, session_id: str, message: str) -> str | None:
        raise SessionNotFound(session_id)  # every session is here: nothing is ever elsewhere

    def forget(self, session_id: str) -> None:
        return None

    def parked(self, session_id: str) -> int:
        conn = self._registry.get(session_id)
        return 0 if conn is None else len(conn.core.polls)  # they park on the session itself

    async def idle_for(self, session_ids: Collection[str]) -> dict[str, float]:
        return {}  # every poll of a session here touches the session itself


_HERE = Located(Placement.HERE, queued=False)
_CLAIMED = Located(Placement.CLAIMED, queued=False)
_UNKNOWN = Located(Placement.UNKNOWN)
