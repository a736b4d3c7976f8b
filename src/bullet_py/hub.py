"""Push to one session, a group, or everyone, from any task of the program.

Delivery to sessions of this process is immediate and never waits on a
client: each session queues the message for its own transport. With a
distributed broker the push is also published for the other processes.

With a broker that has a session store (Redis), the hub is also how the store
reaches this process's sessions: it runs messages that other processes
received for them (POSTs landing elsewhere) and learns about their activity.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .backends.base import Broker, Envelope, Kind, SessionStore
from .backends.memory import MemoryBroker, MemoryStore
from .config import Overflow
from .connection import CloseReason
from .exceptions import BackendError
from .logs import NO_RECORDER, Recorder
from .registry import Registry

logger = logging.getLogger("bullet_py")


class Hub:
    """The program's handle on the sessions of one endpoint."""

    recorder: Recorder = NO_RECORDER  # the endpoint's sessions and transports report here

    def __init__(self, registry: Registry, broker: Broker | None = None) -> None:
        self.registry = registry
        self.broker: Broker = broker or MemoryBroker()
        # Sessions whose queue stays in this process are served by the local
        # store; the shared one (if the broker has one) knows where all are.
        self.local_store = MemoryStore(registry)
        self.store: SessionStore = self.broker.store or self.local_store
        self.process_id = secrets.token_hex(8)
        # Set by the endpoint: ends a session taken over from a dead process
        # that nobody came back for (a fresh handler: on_resume, then on_close).
        self.on_orphan: Callable[[str, str], Coroutine[Any, Any, None]] | None = None

    async def start(self) -> None:
        self.store.bind(self, self.registry.options)
        await self.broker.start(self._deliver_remote)

    async def close(self) -> None:
        await self.broker.close()

    async def send(self, session_id: str, message: str) -> bool:
        """Push ``message`` to one session; True if it was queued here."""
        conn = self.registry.get(session_id)
        if conn is not None:
            return conn.send(message)
        if self.broker.distributed:
            await self.broker.publish(
                Envelope(Kind.SEND, message, session_id=session_id, origin=self.process_id)
            )
        return False

    async def broadcast(
        self, message: str, *, group: str | None = None, exclude: str | None = None
    ) -> int:
        """Push ``message`` to every session (of ``group``); how many were reached here."""
        count = self.deliver_local(message, group=group, exclude=exclude)
        broker = self.broker
        if broker.distributed:
            await broker.publish_broadcast(
                message, group=group, exclude=exclude, origin=self.process_id
            )
        return count

    async def info(self, session_id: str, info: Any) -> bool:
        """Hand ``info`` to the session's ``on_info``; True if it lives here."""
        conn = self.registry.get(session_id)
        if conn is not None:
            self.registry.spawn(conn.handle_info(info))
            return True
        if self.broker.distributed:
            await self.broker.publish(
                Envelope(Kind.INFO, session_id=session_id, info=info, origin=self.process_id)
            )
        return False

    def deliver_local(
        self, message: str, *, group: str | None = None, exclude: str | None = None
    ) -> int:
        """Queue ``message`` for the matching sessions of this process."""
        count = 0
        for conn in self.registry.members(group):
            if conn.session_id != exclude and conn.send(message):
                count += 1
        return count

    # --- what a session store calls (see backends.base.LocalSessions) -------

    async def handle_forwarded(self, session_id: str, message: str) -> tuple[bool, str | None]:
        """Run a message another process received for a session of this one."""
        conn = self.registry.get(session_id)
        if conn is None or conn.closed:
            return False, None
        return True, await conn.handle_message(message)

    def adopt_orphan(self, session_id: str, entry: str) -> None:
        """A parked session whose process died, idle since: ended here (``on_orphan``)."""
        if self.on_orphan is not None:
            self.registry.spawn(self.on_orphan(session_id, entry))

    def probe_held(self, session_id: str) -> None:
        """Another process's client asks for a session a stream here holds: probe it."""
        conn = self.registry.get(session_id)
        if conn is not None and not conn.closed and conn.core.held:
            self.registry.spawn(conn.take_over(self.registry.options.resume_probe_timeout))

    def close_forwarded(self, session_id: str) -> bool:
        """Its client ended a session of this process on a stream another process served."""
        conn = self.registry.get(session_id)
        if conn is None or conn.closed:
            return False
        conn.close()
        return True

    def queue_overflowed(self, session_id: str) -> None:
        """The store applied the overflow policy to this session's queue (and logged it)."""
        self.recorder.overflow(self.registry.options.overflow.value)
        conn = self.registry.get(session_id)
        if conn is not None and self.registry.options.overflow is Overflow.CLOSE:
            conn.close(CloseReason.POLICY)

    async def sync_activity(self) -> None:
        """Before idle sessions are closed, count the polls other processes served them.

        Raises:
            BackendError: the store could not be asked; nothing is closed then.
        """
        now = time.monotonic()
        idle = self.registry.options.session_idle_timeout
        quiet = {
            conn.session_id: conn
            for conn in self.registry
            if conn.store_queue and not conn.closed and now - conn.last_active >= idle
        }
        if not quiet:
            return
        try:
            seen = await self.store.idle_for(list(quiet))
        except BackendError:
            for conn in quiet.values():
                conn.touch()  # unknown: keep them rather than close live sessions
            raise
        for session_id, seconds in seen.items():
            conn = quiet[session_id]
            conn.last_active = max(conn.last_active, now - seconds)

    def _deliver_remote(self, envelope: Envelope) -> None:
        if envelope.origin == self.process_id:
            return
        if envelope.kind is Kind.BROADCAST:
            self.deliver_local(envelope.message, group=envelope.group, exclude=envelope.exclude)
            return
        conn = self.registry.get(envelope.session_id)
        if conn is None:
            return
        if envelope.kind is Kind.SEND:
            conn.send(envelope.message)
        else:
            self.registry.spawn(conn.handle_info(envelope.info))
