"""A WebSocket or an event stream serving a parked session from the shared store.

With several workers (Redis), a session whose stream dropped is *parked*: its
queue lives in Redis (web/resume.py, ``park``). The next stream with its
cookie, on any worker, is a view of it, as a poll is: it takes each message
from the queue (held until written, put back if the write fails), writes it,
and acknowledges it; what the client sends goes to the session's handler,
here if this worker is its home, else forwarded to the home. The handler stays
where it is; ``on_open`` does not run again.

A view ends when its connection ends or when the store says the session has
changed hands (ended, or its home died): the client reconnects, and its next
request finds out which (a view again, a takeover, or a fresh session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSMsgType, web

from ..backends.base import SessionStore, Taken
from ..connection import CloseReason, Connection
from ..core import sse
from ..core.negotiate import Transport
from ..core.ratelimit import MessageBudget, Spend
from ..core.text import exceeds, max_utf8_bytes
from ..exceptions import BackendError, SessionNotFound
from ..logs import log_event, reject, session_hash
from .exchange import Exchange, Services
from .resume import View
from .sendtext import send_text

_WRITE_ERRORS = (ConnectionError, RuntimeError)
_SERVICE_RESTART = 1012  # RFC 6455: the client should reconnect
_TAKE_WAIT = 25.0  # one take's wait; a take that ends sooner means the session changed hands
_EARLY = 0.05


class _ViewHolder:
    """A local view as the holder of its session (another request may ask whether it lives)."""

    __slots__ = ("feed",)

    def __init__(self, feed: _Feed) -> None:
        self.feed = feed

    async def alive(self, timeout: float) -> bool:
        return not self.gone()

    def gone(self) -> bool:
        transport = self.feed.request.transport
        return transport is None or transport.is_closing()

    def drop(self) -> None:
        self.feed.cut()


def _attach(view: View, transport: Transport, feed: _Feed) -> Connection | None:
    conn = view.conn
    if conn is not None:
        conn.attach(transport)  # before any await: nobody else takes it
        conn.holder = _ViewHolder(feed)
    return conn


async def _let_go(conn: Connection | None) -> None:
    if conn is not None:
        conn.detach()
        if conn.closed:
            await conn.finish()


class _Feed:
    """The session's queue as a view reads it: each message written is acknowledged
    with the next take (one round trip a message), or on its own at the end."""

    __slots__ = ("cut_off", "done", "request", "session_id", "store", "taking")

    def __init__(self, store: SessionStore, session_id: str, request: web.Request) -> None:
        self.store = store
        self.session_id = session_id
        self.request = request
        self.done: Taken | None = None  # written, not yet acknowledged
        self.taking: asyncio.Task[Taken | None] | None = None
        self.cut_off = False

    def cut(self) -> None:
        """End the view now (its session is handed off, or a new request takes it over):
        the connection is dropped and a take waiting for a message stops waiting."""
        self.cut_off = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        if self.taking is not None:
            self.taking.cancel()

    async def next(self, wait: float) -> tuple[Taken | None, bool]:
        """The next message, or None; True as second value if the take ended early."""
        peer = self.request.transport

        def alive() -> bool:
            return peer is not None and not peer.is_closing()

        loop = asyncio.get_running_loop()
        started = loop.time()
        done, self.done = self.done, None
        taken = None
        if self.cut_off:
            return None, True
        self.taking = loop.create_task(self.store.take_next(self.session_id, wait, alive, done))
        try:
            taken = await self.taking
        except BackendError:
            return None, True
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.cut_off and current is not None and not current.cancelling():
                return None, True  # only the take was cancelled: the view is cut
            raise
        finally:
            self.taking = None
            if taken is None and done is not None:
                self.store.ack(done)  # the take may not have run (acknowledged once either way)
        return taken, taken is None and loop.time() - started < wait - _EARLY and alive()

    def close(self) -> None:
        if self.done is not None:
            self.store.ack(self.done)
            self.done = None


# --- WebSocket ----------------------------------------------------------------------------


async def serve_websocket(
    endpoint: Services, exchange: Exchange, view: View, protocol: str
) -> web.StreamResponse:
    """The WebSocket of a parked session (the handshake is checked already)."""
    opts = endpoint.options
    request = exchange.request
    ws = web.WebSocketResponse(
        protocols=(protocol,),
        heartbeat=opts.ws_ping_interval,
        max_msg_size=max_utf8_bytes(opts.max_message_size),
        compress=False,
    )
    ws.headers.update(endpoint.cors_headers(request))
    endpoint.set_cookie(exchange, ws, view.session_id)
    feed = _Feed(view.store, view.session_id, request)
    conn = _attach(view, Transport.WEBSOCKET, feed)
    endpoint.views.add(feed)
    try:
        try:
            await ws.prepare(request)
        except _WRITE_ERRORS:
            return ws
        ws.cookies.clear()
        writer = asyncio.get_running_loop().create_task(_ws_writer(endpoint, feed, ws))
        try:
            code = await _ws_reader(endpoint, exchange, view, ws, writer)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if code is not None and not ws.closed:
            with contextlib.suppress(*_WRITE_ERRORS, TimeoutError):
                async with asyncio.timeout(opts.write_timeout):
                    await ws.close(code=code)
    finally:
        endpoint.views.discard(feed)
        await _let_go(conn)
    return ws


async def _ws_reader(
    endpoint: Services,
    exchange: Exchange,
    view: View,
    ws: web.WebSocketResponse,
    writer: asyncio.Task[int],
) -> int | None:
    """Read until the connection ends; the close code to send, or None (none to send)."""
    opts = endpoint.options
    counting = exchange.seen is not None
    budget = MessageBudget(
        (opts.ws_message_rate, opts.ws_message_burst),
        (opts.ws_control_rate, opts.ws_control_burst),
    )
    reading: asyncio.Task[object] | None = None
    try:
        while True:
            reading = asyncio.ensure_future(ws.receive())
            await asyncio.wait((reading, writer), return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                return writer.result() if not writer.cancelled() else None
            msg = reading.result()
            reading = None
            kind = getattr(msg, "type", None)
            if kind is WSMsgType.TEXT:
                data = str(getattr(msg, "data", ""))
                spent = Spend.OK if budget.messages is None else budget.message(time.monotonic())
                if spent is not Spend.OK or exceeds(data, opts.max_message_size):
                    # The rules of a WebSocket at home: the session ends.
                    too_big = spent is Spend.OK
                    reject(
                        "too_big" if too_big else "rate_limited",
                        "message_size" if too_big else spent.value,
                        transport="websocket",
                        session_id=view.session_id,
                        length=len(data) if too_big else 0,
                    )
                    await _end(view)
                    return CloseReason.TOO_BIG if too_big else CloseReason.POLICY
                try:
                    reply = await view.handle_message(data)
                except SessionNotFound:
                    return _SERVICE_RESTART  # it moved or ended: the client finds out anew
                except TimeoutError:
                    continue  # the home has it; its reply comes as a push
                except BackendError:
                    return CloseReason.GOING_AWAY
                if reply:
                    await send_text(ws, reply)
                    if counting:
                        view.store.sent_directly(view.session_id, reply)
            elif kind is WSMsgType.CLOSE:
                await _end(view)  # the client ended its session
                return None
            elif kind in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                return None  # a drop: the session stays parked
    except _WRITE_ERRORS:
        return None
    finally:
        if reading is not None:
            reading.cancel()


async def _end(view: View) -> None:
    """The client ended the session (a close frame): here, or at its home."""
    if view.conn is not None:
        view.conn.close()
        return
    try:
        await view.store.end(view.home, view.session_id)
    except (SessionNotFound, TimeoutError, BackendError):
        pass  # ended or moved already, or the home will find it idle


async def _ws_writer(endpoint: Services, feed: _Feed, ws: web.WebSocketResponse) -> int:
    """Write the queue's messages as they come; the close code when the session moved."""
    store = feed.store
    timeout = endpoint.options.write_timeout
    try:
        while not ws.closed:
            taken, early = await feed.next(_TAKE_WAIT)
            if taken is None:
                if early:
                    return _SERVICE_RESTART
                continue
            try:
                if taken.message:
                    async with asyncio.timeout(timeout):
                        await send_text(ws, taken.message)
            except (TimeoutError, *_WRITE_ERRORS):
                store.requeue(taken)
                return CloseReason.GOING_AWAY
            except BaseException:
                store.requeue(taken)
                raise
            feed.done = taken
            endpoint.hub.recorder.message_out("websocket")
        return CloseReason.NORMAL
    finally:
        feed.close()


# --- event stream ----------------------------------------------------------------------------


async def serve_eventsource(
    endpoint: Services, exchange: Exchange, view: View, *, resumed: bool = True
) -> web.StreamResponse:
    """The event stream of a parked session (``resumed`` False: a counting client starts
    its count again)."""
    opts = endpoint.options
    request = exchange.request
    response = web.StreamResponse(status=200, headers=sse.HEADERS)
    response.headers.update(endpoint.cors_headers(request))
    if exchange.tab is not None:
        endpoint.set_cookie(exchange, response, view.session_id)
    feed = _Feed(view.store, view.session_id, request)
    conn = _attach(view, Transport.EVENTSOURCE, feed)
    endpoint.views.add(feed)
    try:
        try:
            await response.prepare(request)
            if exchange.seen is not None:
                await response.write(sse.RESUMED_EVENT if resumed else sse.FRESH_EVENT)
        except _WRITE_ERRORS:
            return response
        if await _stream(endpoint, feed, response):
            with contextlib.suppress(*_WRITE_ERRORS, TimeoutError):
                async with asyncio.timeout(opts.write_timeout):
                    await response.write_eof()
    finally:
        endpoint.views.discard(feed)
        await _let_go(conn)
    return response


async def _stream(endpoint: Services, feed: _Feed, response: web.StreamResponse) -> bool:
    """Write events until the stream's lifetime; False if the connection failed."""
    loop = asyncio.get_running_loop()
    lifetime = endpoint.options.stream_lifetime
    deadline = None if lifetime is None else loop.time() + lifetime
    try:
        return await _events(endpoint, feed, response, deadline)
    finally:
        feed.close()


async def _events(
    endpoint: Services, feed: _Feed, response: web.StreamResponse, deadline: float | None
) -> bool:
    opts = endpoint.options
    store = feed.store
    loop = asyncio.get_running_loop()
    while True:
        wait = opts.stream_keepalive
        if deadline is not None:
            wait = min(wait, deadline - loop.time())
            if wait <= 0:
                return True
        taken, early = await feed.next(wait)
        try:
            if taken is None:
                if early:
                    return True  # it moved or ended: the client finds out anew
                async with asyncio.timeout(opts.write_timeout):
                    await response.write(sse.KEEPALIVE)
                continue
            message = taken.message
            if message and not sse.can_carry(message):
                store.requeue(taken)  # the next event-stream request is refused (406)
                log_event(
                    logging.INFO, "eventsource_to_polling", session=session_hash(feed.session_id)
                )
                return True
            if message:
                async with asyncio.timeout(opts.write_timeout):
                    await response.write(sse.frame(message))
        except (TimeoutError, *_WRITE_ERRORS):
            if taken is not None:
                store.requeue(taken)
            return False
        except BaseException:
            if taken is not None:
                store.requeue(taken)
            raise
        feed.done = taken
        endpoint.hub.recorder.message_out("eventsource")
