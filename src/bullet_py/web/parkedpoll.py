"""A long-poll parked off aiohttp: the socket's protocol until its answer is written.

A parked poll waits up to ``poll_timeout`` for one message. Inside aiohttp it
would hold the connection handler and its parser, the handler's two tasks
and their coroutines, and bullet_py's own handler coroutines: about 14 KiB a
poll, most of it not about the poll. Where nobody could tell the difference
(:func:`parkable`: the conditions of a direct answer, web/answer.py, and no
access log to write, since aiohttp would log the request when its handler
returns), the poll leaves aiohttp instead (web/detach.py): a
:class:`DetachedPoll` becomes the socket's protocol and waits on the session's
future. When the message comes (or the timeout's ``None``), it writes the bytes
aiohttp would have written (``200`` with the message, or ``204``) and hands
the connection back to a new aiohttp connection handler for the client's next
request, with whatever the client sent meanwhile.

The guarantees are the poll's as before: a message is handed only to a poll
whose client is still connected (``alive``), and one whose write fails goes
back to the head of the session's queue. A client that leaves while parked
unparks the poll at once (its future is cancelled). At shutdown the answer
(a ``204``) is written and the socket closed instead of handed back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..core.text import xhr_body
from ..logs import log_event, session_hash
from .answer import direct_allowed, no_content_bytes, ok_bytes
from .detach import DETACHED, release

if TYPE_CHECKING:
    from ..connection import Connection
    from .exchange import Exchange, Services

logger = logging.getLogger("bullet_py")

#: Bytes a parked client may send (its next request, early) before reading pauses.
_PENDING_MAX = 2**16


def parkable(endpoint: Services, exchange: Exchange) -> Any:
    """aiohttp's server (the factory of connection handlers) if this poll may leave aiohttp.

    None where someone could tell: a tab's poll (its answers renew a cookie),
    a CORS allow-list, middlewares or prepare signals, HTTP/1.0 or a closing
    client (see web/answer.py), an access log that would log the request
    when its handler returns; or an aiohttp whose handler does not name its
    server (``_manager``: tests/web/test_parked_poll.py pins it).
    """
    request = exchange.request
    if (
        exchange.tab is not None
        or endpoint.options.allowed_origins is not None
        or not direct_allowed(request)
    ):
        return None
    inner = request.protocol
    access = getattr(inner, "access_logger", None)
    if access is not None and access.enabled:
        return None
    transport = request.transport
    if transport is None or transport.is_closing():
        return None
    return getattr(inner, "_manager", None)


class DetachedPoll(asyncio.Protocol):
    """The socket's protocol while its poll waits, and the future's done callback."""

    __slots__ = (
        "answered",
        "conn",
        "deadline",
        "endpoint",
        "future",
        "manager",
        "pending",
        "reading_paused",
        "transport",
        "writing_paused",
    )

    def __init__(
        self,
        endpoint: Services,
        conn: Connection,
        transport: asyncio.Transport,
        manager: Any,
        deadline: float,
    ) -> None:
        self.endpoint = endpoint
        self.conn = conn
        self.transport = transport
        self.manager = manager
        self.deadline = deadline
        self.future: asyncio.Future[str | None] | None = None
        self.pending: bytearray | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.answered = False

    def alive(self) -> bool:
        """Whether the poll's client is still connected (a message is handed only then)."""
        return not self.transport.is_closing()

    def park(self, request: web.Request, future: asyncio.Future[str | None]) -> web.StreamResponse:
        """Take the socket from aiohttp and wait on ``future``; what the handler returns to it."""
        self.future = future
        transport = self.transport
        inner = transport.get_protocol()
        transport.set_protocol(self)
        release(inner, transport)
        future.add_done_callback(self)
        return DETACHED

    # --- the answer ----------------------------------------------------------

    def __call__(self, future: asyncio.Future[str | None]) -> None:
        try:
            self._answer(None if future.cancelled() else future.result())
        except Exception:
            logger.exception("parked poll failed")
            self.transport.abort()

    def _answer(self, message: str | None) -> None:
        conn = self.conn
        while message == "":  # an empty message cannot travel by XHR: the next one, then
            log_event(logging.DEBUG, "empty_message_dropped", transport="poll")
            remaining = self.deadline - asyncio.get_running_loop().time()
            waiting = conn.park_poll(max(0.0, remaining), self.alive)
            if isinstance(waiting, asyncio.Future):
                self.future = waiting
                waiting.add_done_callback(self)
                return
            message = waiting
        transport = self.transport
        if not transport.is_closing():
            transport.write(no_content_bytes() if message is None else ok_bytes(xhr_body(message)))
        if transport.is_closing():  # gone before, or the send failed at once
            if message is not None:
                conn.requeue(message)  # the head of the queue again, for the next poll
                log_event(logging.INFO, "poll_requeued", session=session_hash(conn.session_id))
            return
        if message is not None:
            self.endpoint.hub.recorder.message_out("poll")
        self.answered = True
        if not self.writing_paused:
            self._hand_back()

    def _hand_back(self) -> None:
        """The connection goes back to aiohttp, for the client's next request."""
        transport = self.transport
        if self.endpoint.shutting_down:
            transport.close()  # after the answer is written
            return
        handler = self.manager()  # what aiohttp makes for a new connection
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.reading_paused:
            transport.resume_reading()
        pending, self.pending = self.pending, None
        if pending:
            handler.data_received(bytes(pending))

    # --- asyncio.Protocol ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.pending is None:
            self.pending = bytearray()
        self.pending += data
        if len(self.pending) > _PENDING_MAX and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost unparks the poll

    def connection_lost(self, exc: Exception | None) -> None:
        future = self.future
        if future is not None and not future.done():
            future.cancel()  # unparked now, not at its timeout

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.answered and not self.transport.is_closing():
            self._hand_back()  # aiohttp's handler must not get a resume it never paused for


def park(
    endpoint: Services, exchange: Exchange, conn: Connection, manager: Any
) -> web.StreamResponse | None:
    """Park the poll off aiohttp; None if it need not wait (the caller answers it as usual)."""
    request = exchange.request
    transport = request.transport
    assert transport is not None  # parkable() checked
    loop = asyncio.get_running_loop()
    timeout = endpoint.options.poll_timeout
    poll = DetachedPoll(endpoint, conn, transport, manager, loop.time() + timeout)
    conn.touch()
    waiting = conn.park_poll(timeout, poll.alive)
    if isinstance(waiting, asyncio.Future):
        return poll.park(request, waiting)
    if waiting is not None:
        conn.requeue(waiting)  # arrived just now: the usual path takes it again
    return None
