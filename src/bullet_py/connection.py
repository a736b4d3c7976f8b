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
import inspect
import logging
import time
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from .config import Options, Overflow
from .core.negotiate import Transport
from .core.outbox import Offer, Outbox
from .handler import Handler
from .logs import log_event, session_hash

if TYPE_CHECKING:
    from .backends.base import SessionStore
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
        # With several processes: the shared store that knows this session (so a
        # POST landing on another process reaches it) and, for a polling
        # session, holds its queue (pushes go there; any process's poll takes).
        self.store: SessionStore | None = None
        self.store_queue = False
        # Set by a transport that writes queued messages from a loop callback
        # (the WebSocket): called instead of waking wait_outgoing() callers
        # when a message is queued. It calls wake_writer() for what it leaves.
        self.on_queued: Callable[[], None] | None = None
        self._options = options
        self._registry = registry
        # Lists, not a deque and an asyncio.Event: empty, they cost a few bytes
        # instead of a 600-byte block each, in every session.
        self._polls: list[_ParkedPoll] = []
        self._waiters: list[asyncio.Future[None]] = []  # wait_outgoing() callers
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
        if self.store_queue and self.store is not None:
            return self.store.push(self.session_id, message)
        while self._polls:
            poll = self._polls.pop(0)
            if poll.future.done() or not poll.alive():
                _release(poll)  # its client left: answer it (204) so its request ends now
                continue
            if not self.outbox and message:
                poll.future.set_result(message)
                return True
            self._polls.insert(0, poll)
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
        if self.on_queued is not None:
            self.on_queued()
        else:
            self._wake()
        if self._polls:
            self._feed_polls()
        return True

    def close(self, code: int = CloseReason.NORMAL) -> None:
        """End the session. Its transport finishes up and ``on_close`` runs once."""
        if self._closing:
            return
        self._closing = True
        self.close_code = code
        self._wake()
        while self._polls:
            poll = self._polls.pop(0)
            if not poll.future.done():
                poll.future.set_result(None)
        if self.store is not None:
            self.store.release(self.session_id)
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
        # acquire()/release() rather than ``async with``: two coroutines fewer
        # on the path of every message.
        await self._lane.acquire()
        try:
            if self._closing:
                return None
            self.touch()
            try:
                result = await self._call(self.handler.on_message, self, message)
            except _HandlerFailed:
                return None
        finally:
            self._lane.release()
        if result is None or type(result) is str:
            return result
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
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            if timeout is None:
                await waiter
            else:
                async with asyncio.timeout(timeout):
                    await waiter
        except TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return True

    def take(self) -> str | None:
        return self.outbox.take()

    def wake_writer(self) -> None:
        """Release the transport's wait_outgoing() (for an ``on_queued`` transport)."""
        self._wake()

    def requeue(self, message: str) -> None:
        """Put back a message that could not be written: it goes out first next time."""
        self.outbox.requeue(message)
        self._wake()
        self._feed_polls()

    async def poll(self, timeout: float, alive: Callable[[], bool]) -> str | None:
        """Park a long-poll until one message is ready; None on timeout or close.

        The caller owns the returned message: if it cannot write it, it must
        :meth:`requeue` it. ``alive`` tells whether the poll's client is still
        connected, so a message is never handed to a poll whose client left.
        """
        if self.store_queue and self.store is not None:
            # The web layer polls a shared queue with the store's take/requeue;
            # this form counts the message delivered once handed over.
            taken = await self.store.take(self.session_id, timeout, alive)
            if taken is None:
                return None
            self.store.delivered(taken)
            return taken.message
        message = self._take_for_xhr()
        if message is not None or self._closing:
            return message
        while len(self._polls) >= self._options.max_polls_per_session:
            oldest = self._polls.pop(0)
            if not oldest.future.done():
                oldest.future.set_result(None)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        parked = _ParkedPoll(future, alive)
        self._polls.append(parked)
        self.touch()
        if logger.isEnabledFor(logging.DEBUG):
            log_event(logging.DEBUG, "poll_parked", session=session_hash(self.session_id))
        # The poll timeout answers the future with None (cheaper than a
        # cancelling asyncio.timeout, and the same for whoever awaits it).
        expiry = loop.call_at(loop.time() + timeout, _answer_none, future)
        try:
            return await future
        except BaseException:
            if future.done() and not future.cancelled():
                undelivered = future.result()
                if undelivered is not None:
                    self.requeue(undelivered)
            raise
        finally:
            expiry.cancel()
            if parked in self._polls:
                self._polls.remove(parked)
            self.touch()

    @property
    def parked_polls(self) -> int:
        if self.store_queue and self.store is not None:
            return len(self._polls) + self.store.parked(self.session_id)
        return len(self._polls)

    async def finish(self) -> None:
        """Run ``on_close`` (exactly once) and forget the session."""
        if self._finished:
            return
        self._finished = True
        self._closing = True
        self._wake()
        while self._polls:
            poll = self._polls.pop(0)
            if not poll.future.done():
                poll.future.set_result(None)
        self._registry.remove(self)
        if self.store is not None:
            self.store.forget(self.session_id)
        if self._opened:
            try:
                await self._call(self.handler.on_close, self)
            except _HandlerFailed:
                pass

    # --- internals ---------------------------------------------------------

    def _wake(self) -> None:
        """Release every wait_outgoing() caller."""
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

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
            poll = self._polls.pop(0)
            if poll.future.done() or not poll.alive():
                _release(poll)
                continue
            message = self._take_for_xhr()
            if message is None:
                self._polls.insert(0, poll)
                return
            poll.future.set_result(message)

    async def _call(self, callback: Callable[..., Any], *args: Any) -> Any:
        """Run a handler callback with the timeout; contain everything it raises."""
        try:
            result = callback(*args)
            if inspect.iscoroutine(result):
                # Run the first step here: a handler that returns without ever
                # suspending (most do) needs no timer, and a timer per message
                # costs more than the rest of the dispatch together. The time
                # limit counts from the first suspension.
                try:
                    step = result.send(None)
                except StopIteration as done:
                    return done.value
                async with asyncio.timeout(self._options.handler_timeout):
                    return await _Resume(result, step)
            if inspect.isawaitable(result):
                async with asyncio.timeout(self._options.handler_timeout):
                    result = await result
            return result
        except TimeoutError:
            name = getattr(callback, "__name__", "callback")
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
            name = getattr(callback, "__name__", "callback")
            logger.error("handler %s raised CancelledError", name, exc_info=True)
            raise _HandlerFailed from None
        except (Exception, SystemExit, KeyboardInterrupt, GeneratorExit):
            name = getattr(callback, "__name__", "callback")
            logger.error(
                "handler %s failed in session %s",
                name,
                session_hash(self.session_id),
                exc_info=True,
            )
            raise _HandlerFailed from None


def _answer_none(future: asyncio.Future[str | None]) -> None:
    if not future.done():
        future.set_result(None)


class _Resume:
    """Await the rest of a coroutine whose first step has already run.

    What ``await`` does for a fresh coroutine, starting from the value its
    first ``send(None)`` yielded: every later value, result and exception
    (a cancellation included) passes between the task and the coroutine
    unchanged.
    """

    __slots__ = ("_coro", "_step")

    def __init__(self, coro: Coroutine[Any, Any, Any], step: Any) -> None:
        self._coro = coro
        self._step = step

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, step = self._coro, self._step
        self._step = None
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    step = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    step = coro.send(sent)
                except StopIteration as done:
                    return done.value


def _release(poll: _ParkedPoll) -> None:
    """End a parked poll with no message (its request then answers 204)."""
    if not poll.future.done():
        poll.future.set_result(None)


class _HandlerFailed(Exception):
    """A handler callback raised or timed out (already logged)."""


def _as_reply(result: Any, where: str) -> str | None:
    if result is None or isinstance(result, str):
        return result
    logger.error("%s returned %s, not str or None; nothing sent", where, type(result).__name__)
    return None
