"""The seam where sessions of several processes meet.

A :class:`Broker` carries :class:`Envelope` s between processes. The hub
delivers to sessions of its own process directly and publishes everything that
may concern another process; each process's broker hands what it receives back
to its hub with the ``deliver`` callback given to :meth:`Broker.start`.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Callable
from typing import Any


class Kind(enum.Enum):
    SEND = "send"  # one message to one session
    BROADCAST = "broadcast"  # one message to a group or everyone
    INFO = "info"  # a payload for a session's on_info


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """One push, as it travels between processes."""

    kind: Kind
    message: str = ""
    session_id: str | None = None
    group: str | None = None
    exclude: str | None = None  # a session id a broadcast skips
    info: Any = None
    origin: str = ""  # the publishing process, so it can skip its own envelopes


Deliver = Callable[[Envelope], None]


class Broker(abc.ABC):
    """Moves envelopes between processes."""

    @abc.abstractmethod
    async def start(self, deliver: Deliver) -> None:
        """Begin listening; call ``deliver`` for every envelope from another process."""

    @abc.abstractmethod
    async def publish(self, envelope: Envelope) -> None:
        """Send ``envelope`` to every other process."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening and release connections."""

    @property
    def distributed(self) -> bool:
        """False when there is no other process to publish to."""
        return True
