"""One session: a handler instance, its outbound queue, and whoever is taking from it.

A session outlives the HTTP requests of a polling client and is attached, at
any moment, to at most one stream (a WebSocket or an event stream) and to a few
parked polls. Pushes never wait on the network: :meth:`Connection.send` hands
the message to a parked poll or queues it, and the transport's own task writes
it. So one slow client never holds up a broadcast.

Handler calls for one session run one at a time, in arrival order (a lock), so
replies keep the order of the messages that caused them.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .config import Options, Overflow
from .core.negotiate import Transport
from .core.outbox import Offer, Outbox
from .handler import Handler
from .logs import log_event, session_hash

if TYPE_CHECKING:
    from .hub import Hub
    from .registry import Registry

logger = logging.getLogger("bullet_py")


class CloseReason:
    """Why a session ended (also the WebSocket close code used for it)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutdown
    POLICY = 1008  # outbound queue overflow (slow consumer)
    TOO_BIG = 1009


class _ParkedPoll:
    __slots__ = ("alive", "future")

    def __init__(self, future: asyncio.Future[str | None], alive: Callable[[], bool]) -> None:
        self.future = future
        self.alive = alive


class Connection:
    """A live session, as the handler and the rest of the program see it."""

    def __init__(
        self,
        *,
        session_id: str,
        transport: Transport,
        handler: Handler,
        registry: Registry,
        options: Options,
        request: Any = None,
    ) -> None:
        self.session_id = session_id
        self.transport = transport
        self.handler = handler
        self.request = request
        self.state: dict[str, Any] = {}
        self.groups: set[str] = set()
        self.outbox = Outbox(options.outbox_max_messages, options.outbox_max_chars)
        self.close_code = CloseReason.NORMAL
        self.last_active = time.monotonic()
        self.attached = False  # a stream (WebSocket or event stream) owns delivery
        self.eventsource_refused = False  # a message the event stream cannot carry is queued
        self._options = options
        self._registry = registry
        self._polls: collections.deque[_ParkedPoll] = collections.deque()
        self._outgoing = asyncio.Event()
        self._lane = asyncio.Lock()
        self._closing = False
        self._finished = False
        self._opened = False

    def __repr__(self) -> str:
        return f"<Connection {session_hash(self.session_id)} {self.transport.value}>"

    # --- what handlers and the program use ---------------------------------

    @property
    def hub(self) -> Hub:
        """Push to other sessions, groups or everyone."""
        return self._registry.hub

    @property
    def closed(self) -> bool:
        return self._closing

    def send(self, message: str) -> bool:
        """Queue ``message`` for the client; False if the session is closed or full.

        Never blocks: a parked poll gets it at once, else it waits in the outbox
        for the transport's writer or the next poll.
        """
        if not isinstance(message, str):
            raise TypeError(f"messages are str, got {type(message).__name__}")
        if self._closing:
            return False
        while self._polls:
            poll = self._polls.popleft()
            if poll.future.done() or not poll.alive():
                continue
            if not self.outbox and message:
                poll.future.set_result(message)
                return True
            self._polls.appendleft(poll)
            break
        policy = self._options.overflow
        outcome = self.outbox.offer(message, drop_oldest=policy is Overflow.DROP_OLDEST)
        if outcome is Offer.REFUSED:
            log_event(
                logging.WARNING,
                "queue_overflow",
                session=session_hash(self.session_id),
                transport=self.transport.value,
                policy=policy.value,
                dropped=1,
            )
            if policy is Overflow.CLOSE:
                self.close(CloseReason.POLICY)
            return False
        if outcome is Offer.DROPPED_OLDEST:
            log_event(
                logging.WARNING,
                "queue_overflow",
                session=session_hash(self.session_id),
                transport=self.transport.value,
                policy=policy.value,
                dropped=self.outbox.dropped,
            )
        self._outgoing.set()
        self._feed_polls()
        return True

    def close(self, code: int = CloseReason.NORMAL) -> None:
        """End the session. Its transport finishes up and ``on_close`` runs once."""
        if self._closing:
            return
        self._closing = True
        self.close_code = code
        self._outgoing.set()
        while self._polls:
            poll = self._polls.popleft()
            if not poll.future.done():
                poll.future.set_result(None)
        if not self.attached:
            self._registry.spawn(self.finish())

    def join(self, group: str) -> None:
        """Add the session to ``group`` so ``hub.broadcast(..., group=...)`` reaches it."""
        if not self._closing:
            self._registry.join(self, group)

    def leave(self, group: str) -> None:
        self._registry.leave(self, group)

    # --- what the transports use -------------------------------------------

    def touch(self) -> None:
        self.last_active = time.monotonic()

    async def open(self) -> None:
        """Run the handler's ``on_open``; a failure there closes the session."""
        self._opened = True
        try:
            await self._call(self.handler.on_open, self)
        except _HandlerFailed:
            self.close()

    async def handle_message(self, message: str) -> str | None:
        """Give one client message to the handler; its reply, or None."""
        async with self._lane:
            if self._closing:
                return None
            self.touch()
            try:
                result = await self._call(self.handler.on_message, self, message)
            except _HandlerFailed:
                return None
        return _as_reply(result, "on_message")

    async def handle_info(self, info: Any) -> None:
        """Give a program payload to ``on_info`` and push what it returns."""
        async with self._lane:
            if self._closing:
                return
            try:
                result = await self._call(self.handler.on_info, self, info)
            except _HandlerFailed:
                return
        reply = _as_reply(result, "on_info")
        if reply is not None:
            self.send(reply)

    async def wait_outgoing(self, timeout: float | None) -> bool:
        """Wait until a message is queued or the session closes; False on timeout."""
        if self.outbox or self._closing:
            return True
        self._outgoing.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._outgoing.wait()
        except TimeoutError:
            return False
        return True

    def take(self) -> str | None:
        return self.outbox.take()

    def requeue(self, message: str) -> None:
        """Put back a message that could not be written: it goes out first next time."""
        self.outbox.requeue(message)
        self._outgoing.set()
        self._feed_polls()

    async def poll(self, timeout: float, alive: Callable[[], bool]) -> str | None:
        """Park a long-poll until one message is ready; None on timeout or close.

        The caller owns the returned message: if it cannot write it, it must
        :meth:`requeue` it. ``alive`` tells whether the poll's client is still
        connected, so a message is never handed to a poll whose client left.
        """
        message = self._take_for_xhr()
        if message is not None or self._closing:
            return message
        while len(self._polls) >= self._options.max_polls_per_session:
            oldest = self._polls.popleft()
            if not oldest.future.done():
                oldest.future.set_result(None)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        parked = _ParkedPoll(future, alive)
        self._polls.append(parked)
        self.touch()
        log_event(logging.DEBUG, "poll_parked", session=session_hash(self.session_id))
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return None
        except BaseException:
            if future.done() and not future.cancelled():
                undelivered = future.result()
                if undelivered is not None:
                    self.requeue(undelivered)
            raise
        finally:
            if parked in self._polls:
                self._polls.remove(parked)
            self.touch()

    @property
    def parked_polls(self) -> int:
        return len(self._polls)

    async def finish(self) -> None:
        """Run ``on_close`` (exactly once) and forget the session."""
        if self._finished:
            return
        self._finished = True
        self._closing = True
        self._outgoing.set()
        while self._polls:
            poll = self._polls.popleft()
            if not poll.future.done():
                poll.future.set_result(None)
        self._registry.remove(self)
        if self._opened:
            try:
                await self._call(self.handler.on_close, self)
            except _HandlerFailed:
                pass

    # --- internals ---------------------------------------------------------

    def _take_for_xhr(self) -> str | None:
        """The next message an XHR answer can carry (an empty one cannot)."""
        while True:
            message = self.outbox.take()
            if message is None or message:
                return message
            log_event(logging.DEBUG, "empty_message_dropped", transport="poll")

    def _feed_polls(self) -> None:
        """Hand queued messages to parked polls, oldest poll first."""
        while self._polls and self.outbox:
            poll = self._polls.popleft()
            if poll.future.done() or not poll.alive():
                continue
            message = self._take_for_xhr()
            if message is None:
                self._polls.appendleft(poll)
                return
            poll.future.set_result(message)

    async def _call(self, callback: Callable[..., Any], *args: Any) -> Any:
        """Run a handler callback with the timeout; contain everything it raises."""
        name = getattr(callback, "__name__", "callback")
        try:
            async with asyncio.timeout(self._options.handler_timeout):
                result = callback(*args)
                if inspect.isawaitable(result):
                    result = await result
                return result
        except TimeoutError:
            log_event(
                logging.ERROR,
                "handler_timeout",
                callback=name,
                session=session_hash(self.session_id),
            )
            raise _HandlerFailed from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # a real cancellation (shutdown, client gone): let it through
            logger.error("handler %s raised CancelledError", name, exc_info=True)
            raise _HandlerFailed from None
        except (Exception, SystemExit, KeyboardInterrupt, GeneratorExit):
            logger.error(
                "handler %s failed in session %s",
                name,
                session_hash(self.session_id),
                exc_info=True,
            )
            raise _HandlerFailed from None


class _HandlerFailed(Exception):
    """A handler callback raised or timed out (already logged)."""


def _as_reply(result: Any, where: str) -> str | None:
    if result is None or isinstance(result, str):
        return result
    logger.error("%s returned %s, not str or None; nothing sent", where, type(result).__name__)
    return None
