"""The application side of a Bullet endpoint: Bullet's four callbacks as a class.

The Erlang server calls ``init``, ``stream``, ``info`` and ``terminate`` on a
handler module. Here one :class:`Handler` instance lives for one session and
gets the same four moments as coroutines (plain functions work too):

- :meth:`on_open` once, when the session starts (``init``); with several
  workers, :meth:`on_resume` instead on a new instance taking over a session
  whose worker died or stopped;
- :meth:`on_message` for each message from the client; its return value, if
  not None, is the reply, sent on the path the message came by (``stream``);
- :meth:`on_info` for a payload pushed to the session from elsewhere in the
  program with :meth:`Hub.info`; a returned string is sent (``info``);
- :meth:`on_close` exactly once, however the session ends (``terminate``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Connection


class Handler:
    """Base class with do-nothing callbacks; override the ones you need."""

    async def on_open(self, conn: Connection) -> None:
        """The session started; ``conn.transport`` says how the client is connected."""

    async def on_resume(self, conn: Connection) -> None:
        """This new instance takes over a session whose process died or stopped.

        With several workers (Redis), a session outlives its worker: the next
        worker its client reaches makes a fresh handler for it and calls this
        instead of :meth:`on_open` (``conn.taken_over`` is True). The messages
        queued for the session are still there and go first. What the old
        instance kept in Python objects is gone; rebuild what you need here
        (join groups again, reload state). By default, :meth:`on_open`.
        """
        await self.on_open(conn)

    async def on_message(self, conn: Connection, message: str) -> str | None:
        """A message from the client. Return a reply, or None to send nothing."""
        return None

    async def on_info(self, conn: Connection, info: Any) -> str | None:
        """A payload the program sent with ``hub.info``. Return a message to push."""
        return None

    async def on_close(self, conn: Connection) -> None:
        """The session ended. Runs exactly once per session, on every transport."""


HandlerFactory = Callable[[], Handler]
"""Builds one handler per session; a Handler subclass itself is a factory."""
