"""One session as the handler and the transports see it: thin asyncio glue over its rules.

The rules (states, what a push, a poll or a close does) are in
:class:`bullet_py.core.session.SessionCore`, which has no I/O. This module
adds what needs the event loop: parked polls as futures, waking the
transport's writer, running the handler's callbacks one at a time (a lane),
and the clock that idle expiry reads.

Pushes never wait on the network: :meth:`Connection.send` hands the message
to a parked poll or queues it, and the transport's own task writes it. So one
slow client never holds up a broadcast.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from .boundary import CallbackFailed, CallbackTimeout, call_bounded, call_finish, call_start
from .config import Options
from .core.negotiate import Transport
from .core.outbox import Outbox
from .core.session import Delivery, SessionCore, State, StreamDecision
from .logs import NO_RECORDER, Recorder, log_event, session_hash

logger = logging.getLogger("bullet_py")

_QUEUED = Delivery.QUEUED  # read on every push: a global costs less than an enum member


class CloseReason:
    """Why a session ended (also the WebSocket close code used for it)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutdown
    POLICY = 1008  # outbound queue overflow (slow consumer)
    TOO_BIG = 1009


class SessionHandler(Protocol):
    """The four callbacks of a session (:class:`bullet_py.Handler` is the base class)."""

    def on_open(self, conn: Connection) -> Any: ...
    def on_message(self, conn: Connection, message: str) -> Any: ...
    def on_info(self, conn: Connection, info: Any) -> Any: ...
    def on_close(self, conn: Connection) -> Any: ...


class SessionHost(Protocol):
    """What a session needs from the table that holds it (the registry)."""

    def join(self, conn: Connection, group: str) -> None: ...
    def leave(self, conn: Connection, group: str) -> None: ...
    def remove(self, conn: Connection) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...


class Pushes(Protocol):
    """What a handler may do to other sessions (the hub)."""

    async def send(self, session_id: str, message: str) -> bool: ...
    async def broadcast(
        self, message: str, *, group: str | None = None, exclude: str | None = None
    ) -> int: ...
    async def info(self, session_id: str, info: Any) -> bool: ...


class SessionStoreView(Protocol):
    """The part of the endpoint's session store a session uses."""

    def push(self, session_id: str, message: str) -> bool: ...
    def forget(self, session_id: str) -> None: ...
    def parked(self, session_id: str) -> int: ...


class Holder(Protocol):
    """The stream holding a session, as another connection asking for it sees it."""

    async def alive(self, timeout: float) -> bool:
        """Whether the peer shows a sign of life within ``timeout`` seconds."""

    def gone(self) -> bool:
        """The connection has already ended (its stream may not have noticed yet)."""

    def drop(self) -> None:
        """End the stream at once (its session is detached, not closed)."""


class _Unshared:
    """The store of a session nobody can find again (a one-message POST's): it keeps nothing."""

    def push(self, session_id: str, message: str) -> bool:
        return False

    def forget(self, session_id: str) -> None:
        return None

    def parked(self, session_id: str) -> int:
        return 0


UNSHARED: SessionStoreView = _Unshared()


class _ParkedPoll:
    """A long-poll waiting for a message: the future its request awaits.

    Called when that future is done (its done callback): it leaves the
    session and its timer is cancelled, so whoever awaits the future needs
    no ``finally`` of its own (and no coroutine frame kept for one).
    """

    __slots__ = ("alive", "conn", "expiry", "future")

    def __init__(
        self, conn: Connection, future: asyncio.Future[str | None], alive: Callable[[], bool]
    ) -> None:
        self.conn = conn
        self.future = future
        self.alive = alive
        self.expiry: asyncio.TimerHandle | None = None

    def __call__(self, future: asyncio.Future[str | None]) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        conn = self.conn
        conn.core.unpark(self)
        conn.touch()

    def is_open(self) -> bool:
        return not self.future.done() and self.alive()

    def answer(self, message: str | None) -> None:
        if not self.future.done():
            self.future.set_result(message)


class Connection:
    """A live session, as the handler and the rest of the program see it.

    Slotted, and what most sessions never use (the application's ``state``,
    ``groups``, the lane's waiting list) is made on first use: a server holds one per
    client (docs/benchmarks.md, "Memory per connection"). ``__dict__`` stays,
    empty unless the application sets attributes of its own on a session.
    """

    __slots__ = (
        "__dict__",
        "_groups",
        "_host",
        "_hub",
        "_lane_busy",
        "_lane_waiters",
        "_message_timeout",
        "_options",
        "_released",
        "_state",
        "_waiters",
        "address",
        "core",
        "handler",
        "holder",
        "identity",
        "last_active",
        "on_queued",
        "on_wake",
        "outbox",
        "parked",
        "recorder",
        "request",
        "session_id",
        "store",
        "store_queue",
        "taken_over",
    )

    def __init__(
        self,
        *,
        session_id: str,
        transport: Transport,
        handler: SessionHandler,
        registry: SessionHost,
        options: Options,
        hub: Pushes,
        request: Any = None,
        identity: Any = None,
        address: str = "-",
    ) -> None:
        self.session_id = session_id
        self.address = address  # the client's address when the session was made
        self.handler = handler
        self.request = request
        # What the endpoint's authorize hook returned for the request that
        # created the session (None without a hook). Later requests are
        # checked by the hook again but do not change it.
        self.identity: Any = identity
        self.recorder: Recorder = NO_RECORDER  # the endpoint's, for metrics (bullet_py.metrics)
        self._state: dict[str, Any] | None = None  # see the state property
        self._groups: set[str] | None = None
        self.core = SessionCore(
            transport,
            Outbox(options.outbox_max_messages, options.outbox_max_chars),
            options.overflow,
        )
        self.outbox = self.core.outbox
        self.last_active = time.monotonic()
        # The store that knows this session (see share()); a shared store may
        # also hold its queue (store_queue): pushes go there, any process's poll takes.
        self.store: SessionStoreView = UNSHARED
        self.store_queue = False
        # Parked: its stream dropped and its queue moved to the shared store, where
        # any process serves it (docs/sessions.md, "Several workers").
        self.parked = False
        # This handler instance took the session over from a process that died
        # or stopped: on_resume ran instead of on_open.
        self.taken_over = False
        # Set by a transport that writes queued messages from a loop callback
        # (the WebSocket): called instead of waking wait_outgoing() callers
        # when a message is queued. It calls wake_writer() for what it leaves.
        self.on_queued: Callable[[], None] | None = None
        # Set by a transport that starts its writer only when there is work for
        # it (the WebSocket): called whenever wait_outgoing() callers are woken.
        self.on_wake: Callable[[], None] | None = None
        self._hub = hub
        self._options = options
        self._host = registry
        # A handler that bounds its own message calls (a Stream router, which
        # answers {error, timeout, _}) gets no second timer on on_message.
        self._message_timeout = (
            None if getattr(handler, "bounds_its_calls", False) else options.handler_timeout
        )
        self._waiters: list[asyncio.Future[None]] = []  # wait_outgoing() callers
        # The lane runs handler calls one at a time, in arrival order.
        self._lane_busy = False
        self._lane_waiters: list[asyncio.Future[None]] | None = None
        self.holder: Holder | None = None  # the stream holding the session, if it says
        self._released: list[asyncio.Future[None]] | None = None  # take_over() callers

    def __repr__(self) -> str:
        return f"<Connection {session_hash(self.session_id)} {self.transport.value}>"

    # --- what handlers and the program use ---------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """The application's own data, per session (made on first use)."""
        state = self._state
        if state is None:
            state = self._state = {}
        return state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self._state = value

    @property
    def groups(self) -> set[str]:
        """The groups the session has joined (kept by the registry)."""
        groups = self._groups
        if groups is None:
            groups = self._groups = set()
        return groups

    @property
    def hub(self) -> Pushes:
        """Push to other sessions, groups or everyone."""
        return self._hub

    @property
    def options(self) -> Options:
        """The endpoint's options."""
        return self._options

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; the endpoint waits for it at shutdown."""
        return self._host.spawn(coro)

    @property
    def transport(self) -> Transport:
        """The transport serving the session now (or last)."""
        return self.core.transport

    @property
    def closed(self) -> bool:
        return self.core.closing

    @property
    def close_code(self) -> int:
        return self.core.close_code

    def send(self, message: str) -> bool:
        """Queue ``message`` for the client; False if the session is closed or full.

        Never blocks: a parked poll gets it at once, else it waits in the outbox
        for the transport's writer or the next poll.
        """
        if not isinstance(message, str):
            raise TypeError(f"messages are str, got {type(message).__name__}")
        if self.store_queue and not self.core.closing:
            return self.store.push(self.session_id, message)
        delivery = self.core.push(message)
        if delivery is _QUEUED:
            # _queued(), written out: this is the path of every push and broadcast.
            on_queued = self.on_queued
            if on_queued is not None:
                on_queued()
            else:
                self._wake()
            return True
        if delivery is Delivery.HANDED:
            return True
        if delivery is Delivery.REFUSED and self.core.closing:
            return False
        self._overflowed(delivery)
        if delivery is Delivery.DROPPED_OLDEST:
            self._queued()
            return True
        if delivery is Delivery.OVERFLOW_CLOSE:
            self.close(CloseReason.POLICY)
        return False

    def close(self, code: int = CloseReason.NORMAL) -> None:
        """End the session. Its transport finishes up and ``on_close`` runs once."""
        if not self.core.close(code):
            return
        self._wake()
        if not self.core.held:
            self._host.spawn(self.finish())

    def join(self, group: str) -> None:
        """Add the session to ``group`` so ``hub.broadcast(..., group=...)`` reaches it."""
        if not self.core.closing:
            self._host.join(self, group)

    def leave(self, group: str) -> None:
        self._host.leave(self, group)

    # --- what the transports use -------------------------------------------

    def share(self, store: SessionStoreView, *, queue_in_store: bool) -> None:
        """The endpoint's store now knows this session (and holds its queue, if said)."""
        self.store = store
        self.store_queue = queue_in_store

    @property
    def attached(self) -> bool:
        """A stream (WebSocket or event stream) owns delivery."""
        return self.core.held

    @property
    def eventsource_refused(self) -> bool:
        return self.core.state is State.STREAM_REFUSED

    def stream_request(self, transport: Transport) -> StreamDecision:
        return self.core.stream_request(transport)

    def attach(self, transport: Transport) -> None:
        self.core.attach(transport)

    def detach(self) -> None:
        """The stream ended; the session lives on (or finishes, if it was closing)."""
        self.core.detach()
        self.holder = None
        self.touch()
        if self._released:
            released, self._released = self._released, None
            for future in released:
                if not future.done():
                    future.set_result(None)

    async def take_over(self, timeout: float) -> bool:
        """Another connection asks for this held session: True if it may have it.

        The holding stream is asked for a sign of life; a live one keeps the
        session (the asker is another tab). A dead one (a silent drop: no FIN,
        no RST) is dropped, and this waits until it has let go.
        """
        holder = self.holder
        if holder is not None and await holder.alive(timeout):
            return False
        if not self.core.held:
            return not self.core.closing
        if self.holder is not None:
            self.holder.drop()
        if self._released is None:
            self._released = []
        if not await _wait_in(self._released, timeout):
            return False
        return not self.core.held and not self.core.closing

    def refuse_streams(self) -> None:
        """The head of the queue cannot travel on an event stream: polling must take it."""
        self.core.cannot_carry()

    def serve_polls(self) -> None:
        """A poll now serves the session (unless a stream holds it)."""
        core = self.core
        if not core.held and not core.closing:
            core.transport = Transport.POLL

    def touch(self) -> None:
        self.last_active = time.monotonic()

    async def open(self) -> None:
        """Run the handler's ``on_open``; a failure there closes the session."""
        self.core.opened = True
        _, ok = await self._call(self.handler.on_open, (self,))
        if not ok:
            self.close()

    async def resume(self) -> None:
        """A fresh handler takes over a session another process ran: ``on_resume``, not
        ``on_open`` (a handler without one gets ``on_open``); a failure closes the session."""
        self.core.opened = True
        self.taken_over = True
        handler = self.handler
        callback = getattr(handler, "on_resume", None) or handler.on_open
        _, ok = await self._call(callback, (self,))
        if not ok:
            self.close()

    async def wait_released(self, timeout: float) -> bool:
        """Wait until no stream holds the session; False if one still does after ``timeout``."""
        if not self.core.held:
            return True
        if self._released is None:
            self._released = []
        return await _wait_in(self._released, timeout) or not self.core.held

    async def handle_message(self, message: str) -> str | None:
        """Give one client message to the handler; its reply, or None."""
        # An uncontended lane is a flag, taken with no await: a lock would
        # cost two calls (and a coroutine) on the path of every message.
        if self._lane_busy:
            await self._wait_lane()
        else:
            self._lane_busy = True
        try:
            core = self.core
            if core.closing:
                return None
            core.heard_from = True
            self.last_active = time.monotonic()  # touch()
            callback = self.handler.on_message
            try:
                # _call's and call_bounded's work, inlined: two coroutines fewer
                # on the path of every message.
                if self.recorder.times_handlers:
                    result = await self._timed(callback, (self, message), self._message_timeout)
                else:
                    finished, result = call_start(callback, (self, message))
                    if not finished:
                        result = await call_finish(result, self._message_timeout)
            except (CallbackTimeout, CallbackFailed) as failed:
                self._failed(callback, failed)
                return None
        finally:
            self._leave_lane()
        if result is None or type(result) is str:
            return result  # (None, False) for a failed call: nothing to send
        return _as_reply(result, "on_message")

    async def handle_info(self, info: Any) -> None:
        """Give a program payload to ``on_info`` and push what it returns."""
        if self._lane_busy:
            await self._wait_lane()
        else:
            self._lane_busy = True
        try:
            if self.core.closing:
                return
            result, ok = await self._call(self.handler.on_info, (self, info))
        finally:
            self._leave_lane()
        if not ok:
            return
        reply = _as_reply(result, "on_info")
        if reply is not None:
            self.send(reply)

    async def wait_outgoing(self, timeout: float | None) -> bool:
        """Wait until a message is queued or the session closes; False on timeout."""
        if self.outbox or self.core.closing:
            return True
        return await _wait_in(self._waiters, timeout)

    def take(self) -> str | None:
        """The next queued message, for the stream's writer (counted as sent)."""
        return self.core.take()

    def wake_writer(self) -> None:
        """Release the transport's wait_outgoing() (for an ``on_queued`` transport)."""
        self._wake()

    def requeue(self, message: str) -> None:
        """Put back a message that could not be written: it goes out first next time."""
        self.core.requeue(message)
        self._wake()

    async def poll(self, timeout: float, alive: Callable[[], bool]) -> str | None:
        """Park a long-poll until one message is ready; None on timeout or close.

        The caller owns the returned message: if it cannot write it, it must
        :meth:`requeue` it. ``alive`` tells whether the poll's client is still
        connected, so a message is never handed to a poll whose client left.
        """
        waiting = self.park_poll(timeout, alive)
        if waiting is None or isinstance(waiting, str):
            return waiting
        try:
            return await waiting
        except BaseException:
            self.give_back(waiting)
            raise

    def park_poll(
        self, timeout: float, alive: Callable[[], bool]
    ) -> str | asyncio.Future[str | None] | None:
        """:meth:`poll` without the await: the message at once, or the future to await.

        Whoever awaits the future and is cancelled must call :meth:`give_back`
        (the message may have arrived meanwhile). Used by the memory store's
        ``take`` so a parked poll keeps one coroutine frame fewer.
        """
        core = self.core
        message = core.take_for_xhr()
        if message is not None or core.closing:
            return message
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        parked = _ParkedPoll(self, future, alive)
        core.park(parked, self._options.max_polls_per_session)
        self.touch()
        if logger.isEnabledFor(logging.DEBUG):
            log_event(logging.DEBUG, "poll_parked", session=session_hash(self.session_id))
        # The poll timeout answers the future with None (cheaper than a
        # cancelling asyncio.timeout, and the same for whoever awaits it).
        parked.expiry = loop.call_at(loop.time() + timeout, parked.answer, None)
        future.add_done_callback(parked)
        return future

    def give_back(self, future: asyncio.Future[str | None]) -> None:
        """A parked poll's awaiter failed: requeue the message it was handed, if any."""
        if future.done() and not future.cancelled():
            undelivered = future.result()
            if undelivered is not None:
                self.requeue(undelivered)

    @property
    def parked_polls(self) -> int:
        polls = len(self.core.polls)
        # Polls waiting on a shared queue wait in the store, not on the session.
        return polls + self.store.parked(self.session_id) if self.store_queue else polls

    @property
    def anonymous(self) -> bool:
        """Never heard from and unused now: evictable when the table is full (core.session)."""
        return self.core.anonymous and not self.parked_polls

    @property
    def may_expire(self) -> bool:
        """Idle expiry applies now (no stream, no poll waiting, not closing)."""
        return self.core.may_expire and not self.parked_polls

    async def finish(self) -> None:
        """Run ``on_close`` (exactly once) and forget the session."""
        if not self.core.finish():
            return
        self._wake()
        self.recorder.closed(self.core.transport.value)
        self._host.remove(self)
        self.store.forget(self.session_id)
        if self.core.opened:
            await self._call(self.handler.on_close, (self,))

    # --- internals ---------------------------------------------------------

    async def _wait_lane(self) -> None:
        """Wait for the lane, in arrival order; it is handed over already taken."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._lane_waiters
        if waiters is None:
            waiters = self._lane_waiters = []
        waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._leave_lane()  # handed the lane, cancelled before using it: pass it on
            elif future in waiters:
                waiters.remove(future)
            raise

    def _leave_lane(self) -> None:
        """Hand the lane to the oldest caller still waiting, or free it."""
        waiters = self._lane_waiters
        while waiters:
            future = waiters.pop(0)
            if not future.done():
                future.set_result(None)
                return
        self._lane_busy = False

    def _queued(self) -> None:
        if self.on_queued is not None:
            self.on_queued()
        else:
            self._wake()

    def _overflowed(self, delivery: Delivery) -> None:
        self.recorder.overflow(self._options.overflow.value)
        log_event(
            logging.WARNING,
            "queue_overflow",
            session=session_hash(self.session_id),
            transport=self.transport.value,
            policy=self._options.overflow.value,
            dropped=self.outbox.dropped if delivery is Delivery.DROPPED_OLDEST else 1,
        )

    def _wake(self) -> None:
        """Release every wait_outgoing() caller (and start a transport's writer)."""
        if self.on_wake is not None:
            self.on_wake()
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _call(
        self, callback: Callable[..., Any], args: tuple[Any, ...], timeout: float | None = -1.0
    ) -> tuple[Any, bool]:
        """Run a handler callback at the boundary; (result, True), or (None, False) if it failed.

        ``timeout`` defaults to the endpoint's ``handler_timeout``.
        """
        if timeout is not None and timeout < 0:
            timeout = self._options.handler_timeout
        try:
            if self.recorder.times_handlers:
                return await self._timed(callback, args, timeout), True
            return await call_bounded(callback, args, timeout), True
        except (CallbackTimeout, CallbackFailed) as failed:
            self._failed(callback, failed)
        return None, False

    def _failed(
        self, callback: Callable[..., Any], failed: CallbackTimeout | CallbackFailed
    ) -> None:
        """Log a handler callback that timed out or raised."""
        if isinstance(failed, CallbackTimeout):
            log_event(
                logging.ERROR,
                "handler_timeout",
                callback=getattr(callback, "__name__", "callback"),
                session=session_hash(self.session_id),
            )
        else:
            logger.error(
                "handler %s failed in session %s",
                getattr(callback, "__name__", "callback"),
                session_hash(self.session_id),
                exc_info=failed.original,
            )

    async def _timed(
        self, callback: Callable[..., Any], args: tuple[Any, ...], timeout: float | None
    ) -> Any:
        """``call_bounded``, its duration reported (only when metrics time handlers)."""
        started = time.perf_counter()
        try:
            return await call_bounded(callback, args, timeout)
        finally:
            name = getattr(callback, "__name__", "callback")
            self.recorder.handler_seconds(name, time.perf_counter() - started)


async def _wait_in(waiters: list[asyncio.Future[None]], timeout: float | None) -> bool:
    """Wait until whoever empties ``waiters`` resolves ours; False if ``timeout`` came first.

    Lists of futures rather than an ``asyncio.Event``: empty, they cost a few
    bytes in every session instead of an event's block.
    """
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        if timeout is None:
            await waiter
        else:
            async with asyncio.timeout(timeout):
                await waiter
    except TimeoutError:
        return False
    finally:
        if waiter in waiters:
            waiters.remove(waiter)
    return True


def _as_reply(result: Any, where: str) -> str | None:
    if result is None or isinstance(result, str):
        return result
    logger.error("%s returned %s, not str or None; nothing sent", where, type(result).__name__)
    return None
