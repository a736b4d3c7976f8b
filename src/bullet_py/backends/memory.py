"""The single-process default: there is nobody else to tell."""

from __future__ import annotations

from .base import Broker, Deliver, Envelope


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
