"""The WebSocket transport: each text frame is one message, each message one frame."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import ClassVar

from aiohttp import WebSocketError, WSMsgType, web

from ..config import Options
from ..connection import CloseReason, Connection
from ..core import frames
from ..core.maskcheck import MaskCheck
from ..core.negotiate import Transport
from ..core.ratelimit import MessageBudget, Spend
from ..core.text import exceeds, max_utf8_bytes, utf8
from ..exceptions import ProtocolError
from ..logs import NO_RECORDER, log_event, reject, session_hash
from . import view
from .exchange import Exchange, Services
from .liveness import answered
from .resume import begin_counting, park, plan_stream
from .sendtext import send_text
from .sweep import Sweep

logger = logging.getLogger("bullet_py")

_SEND_ERRORS = (ConnectionError, RuntimeError)


# Subprotocols a counting client (the project's bullet.js) offers; the server
# picks the one that says whether the connection resumed its session or
# started a new one (its count then starts again from 0). The original client
# offers none and sees no difference.
PROTOCOL_RESUMED = "bullet.resumed"
PROTOCOL_FRESH = "bullet.fresh"


async def serve(endpoint: Services, exchange: Exchange) -> web.StreamResponse:
    opts = endpoint.options
    request = exchange.request
    if request.headers.get("Sec-WebSocket-Version", "").strip() != "13":
        # aiohttp also takes the drafts 7 and 8; browsers only speak RFC 6455.
        raise ProtocolError(
            "",
            426,
            event="bad_handshake",
            reason="version",
            headers={"Sec-WebSocket-Version": "13"},
        )
    if not _response(opts).can_prepare(request).ok:
        raise ProtocolError(
            "", 400, event="bad_handshake", reason="websocket", text="bad WebSocket handshake"
        )
    resumable = opts.resumes(Transport.WEBSOCKET.value)
    plan = await plan_stream(endpoint, exchange)
    if plan.view is not None:  # a parked session, served from the shared store
        protocol = PROTOCOL_RESUMED if plan.resumed else PROTOCOL_FRESH
        return await view.serve_websocket(endpoint, exchange, plan.view, protocol)
    if plan.conn is None:
        await endpoint.hub.store.register(plan.session_id)  # known everywhere before its cookie
    ws = _response(opts, PROTOCOL_RESUMED if plan.resumed else PROTOCOL_FRESH)
    ws.headers.update(endpoint.cors_headers(request))
    if resumable:
        endpoint.set_cookie(exchange, ws, plan.session_id)  # the next handshake resumes by it
    guard = _MaskGuard.install(request)
    conn = plan.conn
    if conn is not None:
        conn.attach(Transport.WEBSOCKET)  # before the handshake's await: nobody else takes it
    try:
        await ws.prepare(request)
    except _SEND_ERRORS:
        log_event(logging.DEBUG, "websocket_gone", transport="websocket")
        if conn is not None:
            conn.detach()
        return ws  # the client left during the handshake: no session was made
    if resumable:
        # Written with the headers; the morsel would otherwise live as long as the socket.
        ws.cookies.clear()
    fresh = conn is None
    if conn is None:
        conn = endpoint.create_connection(exchange, session_id=plan.session_id)
        begin_counting(conn, exchange, endpoint)
        conn.attach(Transport.WEBSOCKET)
    if guard is not None:
        guard.conn = conn
    probe = _Probe(conn, ws, request)
    conn.holder = probe
    flusher = _Flusher(conn, ws, request, opts.write_timeout)
    conn.on_queued = flusher
    conn.on_wake = flusher.start_writer
    keepalive = (
        None
        if opts.ws_ping_interval is None
        else _Keepalive(conn, ws, request, opts.ws_ping_interval, endpoint.keepalives)
    )
    # Until the reader says how the connection ended, its end is a drop: a
    # cancellation (aiohttp cancels the handler of a connection that is lost)
    # must leave the session resumable like any other drop.
    dropped = True
    try:
        if fresh:
            await conn.open()
        else:
            conn.wake_writer()  # what waited while it was away goes first
            if conn.outbox:
                conn.on_queued()
        budget = MessageBudget(
            (opts.ws_message_rate, opts.ws_message_burst),
            (opts.ws_control_rate, opts.ws_control_burst),
        )
        dropped = await _read_forever(
            conn,
            ws,
            request,
            budget,
            opts.max_message_size,
            opts.ws_idle_timeout,
            opts.write_timeout,
            probe,
        )
    finally:
        conn.on_queued = None
        conn.on_wake = None
        if keepalive is not None:
            keepalive.stop()
        # A connection that dropped (no close frame: a reset, a cut, a dead
        # peer) leaves a resumable session detached for its next connection.
        detach_only = dropped and resumable and not conn.closed
        try:
            if not conn.closed and not detach_only:
                conn.close()
            writer = flusher.writer
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            if detach_only:
                _abort(request)
            elif (
                not ws.closed
                and not _failed(request)
                and not await _close_socket(ws, conn.close_code, opts.write_timeout)
            ):
                _abort(request)
        finally:
            # Even when this task is cancelled meanwhile (the client left and aiohttp
            # cancels handlers, or a shutdown), on_close must run, exactly once.
            conn.detach()
            if conn.closed:
                await asyncio.shield(endpoint.registry.spawn(conn.finish()))
            else:
                log_event(logging.INFO, "session_detached", session=session_hash(conn.session_id))
                park(endpoint, conn)  # with a shared store, any worker may resume it now
    return ws


def _response(opts: Options, *protocols: str) -> web.WebSocketResponse:
    return web.WebSocketResponse(
        protocols=protocols,
        heartbeat=None,  # pings are _Keepalive's (see there)
        max_msg_size=max_utf8_bytes(opts.max_message_size),
        compress=False,  # no permessage-deflate: nothing to inflate, no bombs
        autoping=False,  # _read_forever answers PING, and a PONG shows the peer alive
    )


class _Probe:
    """The WebSocket as a holder: asked whether it is alive, it pings (see web/liveness.py)."""

    __slots__ = ("conn", "heard", "request", "ws")

    def __init__(self, conn: Connection, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.conn = conn
        self.ws = ws
        self.request = request
        self.heard: asyncio.Future[None] | None = None  # resolved by the reader's next frame

    async def alive(self, timeout: float) -> bool:
        if self.gone():
            return False
        heard = self.heard
        if heard is None or heard.done():
            heard = self.heard = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self.ws.ping()
        except (TimeoutError, *_SEND_ERRORS):
            return False
        # Only the peer's own frame counts: a WebSocket client answers pings
        # from its network stack (a browser) or its reader; a kernel's
        # acknowledgement would also come from a proxy or a client that stopped.
        return await answered(self.request, heard, timeout, count_ack=False)

    def gone(self) -> bool:
        transport = self.request.transport
        return self.ws.closed or transport is None or transport.is_closing()

    def drop(self) -> None:
        log_event(logging.INFO, "websocket_dead_peer", session=session_hash(self.conn.session_id))
        _abort(self.request)


#: Frames one reader handles before it lets the other tasks of the loop run.
#: aiohttp hands a reader every frame already parsed without suspending, so
#: a client whose frames are always ready would otherwise hold the loop for a
#: whole socket read (tens of thousands of tiny frames).
_FRAMES_PER_TURN = 16


async def _read_forever(
    conn: Connection,
    ws: web.WebSocketResponse,
    request: web.Request,
    budget: MessageBudget,
    max_units: int,
    idle_timeout: float | None,
    write_timeout: float,
    probe: _Probe,
) -> bool:
    """Read until the connection ends; True if it dropped rather than ended.

    Ended: the client's close frame, a frame breaking the protocol or a
    budget, the session closed here. Dropped: the connection went away
    without a close frame (a reset, a cut, a dead peer), or a write to it failed.
    """
    recorder = conn.recorder
    counting = recorder is not NO_RECORDER  # the no-op's calls skipped, per message
    core = conn.core  # core.closing is conn.closed, without the property's call
    limited = budget.messages is not None or budget.control is not None
    # The socket's transport outlives the connection (a lost one is closing and
    # send_str raises), so it is read once, not per reply.
    peer = request.transport
    turn = 0
    while not core.closing:
        turn += 1
        if turn >= _FRAMES_PER_TURN:
            turn = 0
            await asyncio.sleep(0)  # fairness: see _FRAMES_PER_TURN
            if core.closing:
                return False
        try:
            msg = await ws.receive(timeout=idle_timeout)
        except TimeoutError:
            log_event(logging.INFO, "websocket_idle", session=session_hash(conn.session_id))
            return True
        heard = probe.heard
        if heard is not None:
            probe.heard = None
            if not heard.done():
                heard.set_result(None)
        kind = msg.type
        spent = (
            Spend.OK
            if not limited
            else budget.control_frame(time.monotonic())
            if kind is WSMsgType.PING
            else budget.message(time.monotonic())
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY
            else Spend.OK
        )
        if spent is not Spend.OK:
            reject("rate_limited", spent.value, transport="websocket", session_id=conn.session_id)
            conn.close(CloseReason.POLICY)
            _fail(request, CloseReason.POLICY, write_timeout)
            return False
        if kind is WSMsgType.TEXT:
            data: str = msg.data
            if len(data) * 2 > max_units and exceeds(data, max_units):  # the call only if it may
                reject(
                    "too_big",
                    "message_size",
                    transport="websocket",
                    session_id=conn.session_id,
                    length=len(data),
                )
                conn.close(CloseReason.TOO_BIG)
                return False
            if counting:
                recorder.message_in("websocket")
            reply = await conn.handle_message(data)
            if reply is None or core.closing:
                continue
            if conn.outbox:
                conn.send(reply)
                continue
            # Nothing queued ahead of it: write the reply here, saving a task switch.
            if core.replay is not None:
                core.sent_directly(reply)
            try:
                if not _write_now(ws, peer, reply):  # no coroutine when it cannot wait
                    await _send(ws, request, reply, write_timeout)
                if counting:
                    recorder.message_out("websocket")
            except TimeoutError:
                _stalled(conn, request)
                return False
            except _SEND_ERRORS:
                conn.requeue(reply)  # the next connection gets it (if the session resumes)
                return True
        elif msg.type is WSMsgType.PING:
            conn.touch()
            try:
                async with asyncio.timeout(write_timeout):
                    await ws.pong(msg.data)
            except (TimeoutError, *_SEND_ERRORS):
                return True
        elif msg.type is WSMsgType.PONG:
            conn.touch()  # what _Keepalive waits for
        elif msg.type is WSMsgType.BINARY:
            conn.touch()
            log_event(logging.DEBUG, "binary_frame_ignored", length=len(msg.data))
        elif msg.type is WSMsgType.ERROR and isinstance(ws.exception(), WebSocketError):
            reject(
                "bad_frame",
                type(ws.exception()).__name__,
                transport="websocket",
                session_id=conn.session_id,
            )
            return False
        else:
            # CLOSE: the client ended it. CLOSED, or an ERROR that is not the
            # protocol's (a lost connection): it went away without a close frame.
            return msg.type is not WSMsgType.CLOSE
    return False


async def _write_queued(
    conn: Connection, ws: web.WebSocketResponse, request: web.Request, write_timeout: float
) -> None:
    """Write queued messages in order until none is left; close the socket if the session closed.

    Started by :meth:`_Flusher.start_writer` when there is work the flush
    callback leaves to it, and ends when it is done: an idle WebSocket has no
    writer task (a task and its coroutine cost about 1 KiB per connection).
    """
    while (message := conn.take()) is not None:
        try:
            await _send(ws, request, message, write_timeout)
            conn.recorder.message_out("websocket")
        except TimeoutError:
            _stalled(conn, request)
            return
        except _SEND_ERRORS:
            conn.requeue(message)  # kept for the next connection, if the session resumes
            _abort(request)  # and the reader sees the drop
            return
    if conn.closed:
        if not _failed(request) and not await _close_socket(ws, conn.close_code, write_timeout):
            _abort(request)  # wakes the reader too: the peer is gone or not reading


# aiohttp makes a WebSocket write wait only while the transport is paused,
# which takes more than its high-water mark (64 KiB) buffered. A frame of at
# most this many characters (64,000 bytes of UTF-8) written while nothing is
# buffered cannot pause it, so it is sent without a timer: a timer per message
# costs more than the write itself.
_UNTIMED_MAX_CHARS = 16_000


def _write_now(ws: web.WebSocketResponse, transport: asyncio.Transport | None, text: str) -> bool:
    """Write ``text`` as one text frame at once if the write cannot wait on the peer.

    The bytes are those aiohttp's ``send_str`` would write, written as the
    flush writes its frames (see :class:`_Flusher`), without its coroutines.
    False, writing nothing, when it might wait (a big message, something
    buffered) or aiohttp must decide (a closing transport, a closed socket).
    """
    if (
        transport is None
        or len(text) > _UNTIMED_MAX_CHARS
        or transport.get_write_buffer_size()
        or transport.is_closing()
        or ws.closed
    ):
        return False
    try:
        data = text.encode("utf-8")  # utf8(text), without a call for the usual case
    except UnicodeEncodeError:
        data = utf8(text)
    transport.write(frames.text(data))
    return True


async def _send(ws: web.WebSocketResponse, request: web.Request, text: str, timeout: float) -> None:
    """Send one text frame; TimeoutError if the peer has not taken it within ``timeout``."""
    if _write_now(ws, request.transport, text):
        return
    # A closing transport makes send_str raise at once; anything else may wait.
    async with asyncio.timeout(timeout):
        await send_text(ws, text)


# One flush writes at most this much at a time: with nothing buffered before,
# the transport stays under its 64 KiB high-water mark and never pauses.
_FLUSH_MAX_BYTES = 60_000


class _Flusher:
    """Writes what a session queued from a loop callback, not from the writer task.

    A push or a broadcast queues the message and puts the session in the loop's
    batch; one callback then flushes every session of the batch. A flush
    writes the queued messages as text frames in one system call, as long as
    nothing is buffered for the peer already; what is left (a peer behind on
    reading, a big message, a closing session) goes to the writer task and its
    timeouts. Waking a task per session made a broadcast cost twice a plain
    send loop, and one write per frame made a burst of pushes cost half again
    as much as aiohttp's own send loop.

    The frames come from :mod:`bullet_py.core.frames`, not ``send_str``, only
    to write many in one go (and, in :func:`_write_now`, one without a
    coroutine). aiohttp's writer still writes on the same socket: the
    writer task's text frames, and every ping, pong and close frame. Close stays
    with aiohttp because it is a handshake ``WebSocketResponse`` keeps the state
    of (closing, waiting for the peer's close frame, the close code, ending
    ``receive()``); sending it ourselves would mean setting that state through
    private attributes. Pings and pongs go the same way so aiohttp's flow
    control and closing-transport errors apply to every control frame alike.
    Two writers on one socket are safe because both write the same bytes for a
    frame (compression is never negotiated: see :func:`serve`) and aiohttp hands
    each frame whole to the transport before it can yield, so a flush, run from
    a loop callback, never lands inside one. tests/core/test_frames.py pins both
    against the installed aiohttp, whose range pyproject.toml bounds to it.
    """

    __slots__ = ("batch", "conn", "request", "scheduled", "write_timeout", "writer", "ws")

    def __init__(
        self,
        conn: Connection,
        ws: web.WebSocketResponse,
        request: web.Request,
        write_timeout: float,
    ) -> None:
        self.conn = conn
        self.ws = ws
        self.request = request
        self.write_timeout = write_timeout
        self.scheduled = False
        self.batch = _Batch.of_running_loop()
        self.writer: asyncio.Task[None] | None = None

    def __call__(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.batch.add(self)

    def start_writer(self) -> None:
        """The session's ``on_wake``: start the writer task if it has work and is not running.

        A running writer takes everything queued before it ends (it ends only
        once the queue is empty, with no await between that check and its
        end), so a wake while it runs needs nothing more.
        """
        conn = self.conn
        if (self.writer is None or self.writer.done()) and (conn.outbox or conn.closed):
            self.writer = asyncio.get_running_loop().create_task(
                _write_queued(conn, self.ws, self.request, self.write_timeout)
            )

    def flush(self) -> None:
        self.scheduled = False
        conn = self.conn
        outbox = conn.outbox
        # core.take counts the message as sent for a counting client's replay;
        # without one, the outbox's own take is all it would do.
        take = outbox.take if conn.core.replay is None else conn.core.take
        transport = self.request.transport
        while (
            outbox
            and not conn.closed
            and not self.ws.closed
            and transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
        ):
            payloads: list[bytes] = []
            size = 0
            while (message := outbox.peek()) is not None:
                try:
                    data = message.encode("utf-8")  # as in _write_now
                except UnicodeEncodeError:
                    data = utf8(message)
                if size + len(data) > _FLUSH_MAX_BYTES:
                    break
                take()
                payloads.append(data)
                size += len(data) + frames.MAX_HEADER_SIZE
            if not payloads:
                break
            transport.write(frames.texts(payloads))
            conn.recorder.message_out("websocket", len(payloads))
        if outbox or conn.closed:
            conn.wake_writer()


class _Batch:
    """The sessions of one event loop with something queued, flushed by one callback."""

    __slots__ = ("__weakref__", "loop", "pending")

    _of_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batch]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[_Flusher] = []

    @classmethod
    def of_running_loop(cls) -> _Batch:
        loop = asyncio.get_running_loop()
        batch = cls._of_loop.get(loop)
        if batch is None:
            batch = cls._of_loop[loop] = cls(loop)
        return batch

    def add(self, flusher: _Flusher) -> None:
        if not self.pending:
            self.loop.call_soon(self.run)
        self.pending.append(flusher)

    def run(self) -> None:
        pending, self.pending = self.pending, []
        for flusher in pending:
            try:
                flusher.flush()
            except Exception:  # never leave the other sessions unflushed
                logger.exception("websocket flush failed")
                flusher.conn.wake_writer()


class _Keepalive:
    """Finds dead peers with WebSocket pings, at no cost per message received.

    A peer that sent no frame for ``interval`` seconds is pinged; if nothing
    (its pong or any other frame) comes back within ``interval / 2``, the
    connection is dropped. That is what aiohttp's ``heartbeat`` does, but
    aiohttp re-arms its timer from a loop callback on every frame received,
    which cost about a tenth of a WebSocket echo; here the endpoint's one
    :class:`~bullet_py.web.sweep.Sweep` calls :meth:`check` every quarter
    interval for every WebSocket, and the check reads the session's last
    activity (``touch()``, which every frame received updates). So the ping
    goes out within a quarter interval of ``interval`` quiet, and the drop
    within a quarter interval of the half interval after it.
    """

    __slots__ = ("conn", "interval", "pinged_at", "pinging", "request", "sweep", "ws")

    def __init__(
        self,
        conn: Connection,
        ws: web.WebSocketResponse,
        request: web.Request,
        interval: float,
        sweep: Sweep,
    ) -> None:
        self.conn = conn
        self.ws = ws
        self.request = request
        self.interval = interval
        self.pinged_at: float | None = None
        self.pinging: asyncio.Task[None] | None = None
        self.sweep = sweep
        sweep.add(self)

    def stop(self) -> None:
        self.sweep.discard(self)
        if self.pinging is not None:
            self.pinging.cancel()

    def check(self, now: float) -> None:
        conn = self.conn
        if conn.closed or self.ws.closed:
            return  # the reader ends it, and stop() takes it off the sweep
        if self.pinged_at is not None:
            if conn.last_active < self.pinged_at:  # no answer yet
                if now - self.pinged_at >= self.interval / 2:
                    log_event(
                        logging.INFO, "websocket_dead_peer", session=session_hash(conn.session_id)
                    )
                    self.sweep.discard(self)
                    _abort(self.request)  # a drop: the reader detaches (or ends) the session
                return
            self.pinged_at = None
        if now - conn.last_active >= self.interval:
            self.pinged_at = now
            self.pinging = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        try:
            async with asyncio.timeout(self.interval / 2):
                await self.ws.ping()
        except (TimeoutError, *_SEND_ERRORS):
            pass  # no pong will come either: check() drops the connection
        finally:
            self.pinging = None


class _MaskGuard(asyncio.Protocol):
    """Stands between the socket and aiohttp's protocol to refuse unmasked client frames.

    RFC 6455 §5.1: a server must close the connection on a client frame
    without a mask; aiohttp's reader accepts them. The guard is the socket's
    protocol (``transport.set_protocol``, asyncio's public API) for the life
    of the WebSocket: every chunk goes through :class:`core.maskcheck.MaskCheck`
    (headers only), then on to aiohttp unchanged. From the first unmasked
    frame on nothing more is passed on: the guard writes a close frame with
    1002 and closes the connection, which ends aiohttp's reader.
    tests/robustness/test_i_abuse.py fails if aiohttp starts to refuse such
    frames itself (then this guard can go) or if the guard stops seeing them.
    """

    __slots__ = ("check", "conn", "inner", "transport")

    def __init__(self, inner: asyncio.BaseProtocol, transport: asyncio.Transport) -> None:
        self.inner = inner
        self.transport = transport
        self.check = MaskCheck()
        self.conn: Connection | None = None

    @classmethod
    def install(cls, request: web.Request) -> _MaskGuard | None:
        transport = request.transport
        if transport is None:
            return None
        # Not isinstance(asyncio.Transport): uvloop's transports are not its subclasses.
        guard = cls(transport.get_protocol(), transport)
        transport.set_protocol(guard)
        return guard

    def data_received(self, data: bytes) -> None:
        if self.check.feed(data):
            self.inner.data_received(data)  # type: ignore[attr-defined]
            return
        if self.transport.is_closing():
            return
        conn = self.conn
        reject(
            "bad_frame",
            "unmasked",
            transport="websocket",
            session_id=None if conn is None else conn.session_id,
        )
        if conn is not None:
            conn.close(_PROTOCOL_ERROR)
        _fail_transport(self.transport, _PROTOCOL_ERROR, _FAIL_TIMEOUT)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[attr-defined,no-any-return]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


_PROTOCOL_ERROR = 1002
_FAIL_TIMEOUT = 10.0  # a failed connection's close frame gets this long to drain

# Connections failed with _fail: no close handshake is waited for on them.
_FAILED: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()


def _fail(request: web.Request, code: int, timeout: float) -> None:
    """Fail the WebSocket connection (RFC 6455 §7.1.7): see :func:`_fail_transport`."""
    transport = request.transport
    if transport is not None:  # any loop's transport (uvloop's are not asyncio.Transport's)
        _fail_transport(transport, code, timeout)


def _fail_transport(transport: asyncio.Transport, code: int, timeout: float) -> None:
    """Send a close frame with ``code`` and close the connection without waiting for
    the peer's answer: reading stops at once, so a flood already in the socket is
    never parsed; the close frame drains, or the connection is dropped after
    ``timeout``. For a peer that broke a rule, not for an orderly close.
    """
    if transport.is_closing():
        return
    _FAILED.add(transport)
    transport.write(frames.close(code))
    transport.close()
    asyncio.get_running_loop().call_later(timeout, transport.abort)


def _failed(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and transport in _FAILED


async def _close_socket(ws: web.WebSocketResponse, code: int, timeout: float) -> bool:
    """Send the close frame and wait for the answer; False if that stalled or failed."""
    try:
        async with asyncio.timeout(timeout):
            await ws.close(code=code)
    except (*_SEND_ERRORS, TimeoutError):
        return False
    return True


def _stalled(conn: Connection, request: web.Request) -> None:
    """A peer that took nothing within the write timeout: the session ends with 1008.

    The socket is dropped rather than closed: a close frame cannot get past
    what the peer does not read.
    """
    reject("slow_consumer", "write_timeout", transport="websocket", session_id=conn.session_id)
    conn.close(CloseReason.POLICY)
    _abort(request)


def _abort(request: web.Request) -> None:
    """Drop the connection of a peer that stopped reading, discarding what is buffered.

    A graceful close would wait for the buffer to drain, which a peer that never
    reads never allows: the socket (and its buffer) would stay forever.
    """
    transport = request.transport
    if transport is not None:
        transport.abort()
