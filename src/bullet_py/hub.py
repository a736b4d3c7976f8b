"""Push to one session, a group, or everyone, from any task of the program.

Delivery to sessions of this process is immediate and never waits on a
client: each session queues the message for its own transport. With a
distributed broker the push is also published for the other processes.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from .backends.base import Broker, Envelope, Kind
from .backends.memory import MemoryBroker
from .registry import Registry

logger = logging.getLogger("bullet_py")


class Hub:
    """The program's handle on the sessions of one endpoint."""

    def __init__(self, registry: Registry, broker: Broker | None = None) -> None:
        self.registry = registry
        self.broker: Broker = broker or MemoryBroker()
        self.process_id = secrets.token_hex(8)
        registry.hub = self

    async def start(self) -> None:
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
        if self.broker.distributed:
            await self.broker.publish(
                Envelope(
                    Kind.BROADCAST, message, group=group, exclude=exclude, origin=self.process_id
                )
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
