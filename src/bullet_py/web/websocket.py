"""The WebSocket transport: each text frame is one message, each message one frame."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
import weakref
from typing import ClassVar

from aiohttp import WebSocketError, WSMsgType, web
from aiohttp.http import WS_KEY

from ..config import Options
from ..connection import CloseReason, Connection
from ..core import frames
from ..core.negotiate import Transport
from ..core.ratelimit import MessageBudget, Spend
from ..core.text import exceeds, max_utf8_bytes, utf8
from ..exceptions import ProtocolError
from ..logs import NO_RECORDER, log_event, reject, session_hash
from . import view
from .exchange import Exchange, Services
from .liveness import answered
from .resume import begin_counting, park, plan_stream
from .sweep import Sweep
from .wspeer import WebSocketPeer

logger = logging.getLogger("bullet_py")

_SEND_ERRORS = (ConnectionError, RuntimeError)


# Subprotocols a counting client (the project's bullet.js) offers; the server
# picks the one that says whether the connection resumed its session or
# started a new one (its count then starts again from 0). The original client
# offers none and sees no difference.
PROTOCOL_RESUMED = "bullet.resumed"
PROTOCOL_FRESH = "bullet.fresh"


async def serve(endpoint: Services, exchange: Exchange) -> web.StreamResponse:
    """Answer a WebSocket handshake; the session then lives in a task of its own.

    The ``101`` is written through aiohttp (its ``prepare``: signals,
    headers), then the socket leaves aiohttp (web/wspeer.py) and this
    handler returns: an idle WebSocket holds no request handler, parser or
    handler task of aiohttp's.
    """
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
    handshake = web.StreamResponse(status=101)
    handshake.headers.update(endpoint.cors_headers(request))
    if resumable:  # the next handshake resumes by it
        endpoint.set_cookie(exchange, handshake, plan.session_id)
    handshake.headers.update(
        handshake_headers(request, PROTOCOL_RESUMED if plan.resumed else PROTOCOL_FRESH)
    )
    handshake.force_close()  # no HTTP request follows on this connection
    peer = WebSocketPeer.install(request, max_utf8_bytes(opts.max_message_size))
    conn = plan.conn
    if conn is not None:
        conn.attach(Transport.WEBSOCKET)  # before the handshake's await: nobody else takes it
    try:
        if peer is None:
            raise ConnectionResetError("the client left before its handshake")
        await handshake.prepare(request)
    except _SEND_ERRORS:
        log_event(logging.DEBUG, "websocket_gone", transport="websocket")
        if conn is not None:
            conn.detach()
        return handshake  # the client left during the handshake: no session was made
    fresh = conn is None
    if conn is None:
        conn = endpoint.create_connection(exchange, session_id=plan.session_id)
        begin_counting(conn, exchange, endpoint)
        conn.attach(Transport.WEBSOCKET)
    peer.conn = conn
    peer.release()
    endpoint.registry.spawn(_live(endpoint, conn, peer, fresh=fresh, resumable=resumable))
    return handshake


def handshake_headers(request: web.Request, protocol: str) -> dict[str, str]:
    """The headers that accept a WebSocket handshake, as aiohttp's ``WebSocketResponse`` sends them.

    ``protocol`` is named only if the client offered it. The request was
    checked already (``can_prepare``).
    """
    key = request.headers["Sec-WebSocket-Key"]
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_KEY).digest()).decode()
    headers = {"Upgrade": "websocket", "Connection": "upgrade", "Sec-WebSocket-Accept": accept}
    offered = request.headers.get("Sec-WebSocket-Protocol")
    if offered is not None and protocol in (name.strip() for name in offered.split(",")):
        headers["Sec-WebSocket-Protocol"] = protocol
    return headers


async def _live(
    endpoint: Services, conn: Connection, peer: WebSocketPeer, *, fresh: bool, resumable: bool
) -> None:
    """A WebSocket session from its handshake to its end: open, read, close or detach."""
    opts = endpoint.options
    probe = _Probe(conn, peer)
    conn.holder = probe
    flusher = _Flusher(conn, peer, opts.write_timeout)
    conn.on_queued = flusher
    conn.on_wake = flusher.start_writer
    keepalive = (
        None
        if opts.ws_ping_interval is None
        else _Keepalive(conn, peer, opts.ws_ping_interval, endpoint.keepalives)
    )
    # Until the reader says how the connection ended, its end is a drop: a
    # cancellation (a shutdown that ran out of time) must leave the session
    # resumable like any other drop.
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
            peer,
            budget,
            opts.max_message_size,
            opts.ws_idle_timeout,
            opts.write_timeout,
            probe,
        )
    except Exception:
        logger.exception("websocket session failed")
        dropped = False
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
                peer.abort()
            elif not peer.failed and not await _close_socket(peer, conn.close_code, opts):
                peer.abort()
        finally:
            # Even when this task is cancelled meanwhile (a shutdown), on_close
            # must run, exactly once.
            conn.detach()
            if conn.closed:
                await asyncio.shield(endpoint.registry.spawn(conn.finish()))
            else:
                log_event(logging.INFO, "session_detached", session=session_hash(conn.session_id))
                park(endpoint, conn)  # with a shared store, any worker may resume it now


def _response(opts: Options) -> web.WebSocketResponse:
    """aiohttp's WebSocket answer, here only to check a handshake (``can_prepare``)."""
    return web.WebSocketResponse(
        heartbeat=None, max_msg_size=max_utf8_bytes(opts.max_message_size), compress=False
    )


class _Probe:
    """The WebSocket as a holder: asked whether it is alive, it pings (see web/liveness.py)."""

    __slots__ = ("conn", "heard", "peer")

    def __init__(self, conn: Connection, peer: WebSocketPeer) -> None:
        self.conn = conn
        self.peer = peer
        self.heard: asyncio.Future[None] | None = None  # resolved by the reader's next frame

    async def alive(self, timeout: float) -> bool:
        if self.gone():
            return False
        heard = self.heard
        if heard is None or heard.done():
            heard = self.heard = asyncio.get_running_loop().create_future()
        self.peer.ping()
        # Only the peer's own frame counts: a WebSocket client answers pings
        # from its network stack (a browser) or its reader; a kernel's
        # acknowledgement would also come from a proxy or a client that stopped.
        return await answered(self.peer.transport, heard, timeout, count_ack=False)

    def gone(self) -> bool:
        return not self.peer.writable()

    def drop(self) -> None:
        log_event(logging.INFO, "websocket_dead_peer", session=session_hash(self.conn.session_id))
        self.peer.abort()


#: Frames one reader handles before it lets the other tasks of the loop run.
#: The parser hands a reader every frame of a socket read without suspending,
#: so a client whose frames are always ready would otherwise hold the loop for
#: a whole socket read (tens of thousands of tiny frames).
_FRAMES_PER_TURN = 16


async def _read_forever(
    conn: Connection,
    peer: WebSocketPeer,
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
    turn = 0
    while not core.closing:
        turn += 1
        if turn >= _FRAMES_PER_TURN:
            turn = 0
            await asyncio.sleep(0)  # fairness: see _FRAMES_PER_TURN
            if core.closing:
                return False
        try:
            msg = await peer.receive(idle_timeout)
        except TimeoutError:
            log_event(logging.INFO, "websocket_idle", session=session_hash(conn.session_id))
            return True
        except WebSocketError as broken:
            reject(
                "bad_frame",
                type(broken).__name__,
                transport="websocket",
                session_id=conn.session_id,
            )
            # aiohttp's code for it (1002, 1007, 1009); the peer's close frame is then awaited.
            peer.send_close(broken.code)
            return False
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
            peer.fail(CloseReason.POLICY, write_timeout)
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
                if not _write_now(peer, reply):  # no coroutine when it cannot wait
                    await _send(peer, reply, write_timeout)
                if counting:
                    recorder.message_out("websocket")
            except TimeoutError:
                _stalled(conn, peer)
                return False
            except _SEND_ERRORS:
                conn.requeue(reply)  # the next connection gets it (if the session resumes)
                return True
        elif kind is WSMsgType.PING:
            conn.touch()
            if not peer.writable():
                return True
            peer.pong(msg.data)
            if peer.writing_paused:  # a client that pings and never reads: no pile of pongs
                try:
                    async with asyncio.timeout(write_timeout):
                        await peer.drain()
                except (TimeoutError, *_SEND_ERRORS):
                    return True
        elif kind is WSMsgType.PONG:
            conn.touch()  # what _Keepalive waits for
        elif kind is WSMsgType.BINARY:
            conn.touch()
            log_event(logging.DEBUG, "binary_frame_ignored", length=len(msg.data))
        elif kind is WSMsgType.CLOSE:
            # The client ended it: answered as aiohttp answers (1000), and the socket closes.
            peer.close_received = True
            peer.send_close(1000)
            peer.transport.close()
            return False
        elif kind is not WSMsgType.CLOSING:
            return True  # CLOSED: it went away without a close frame
        # CLOSING: the session closed here (the writer sent the close frame).
    return False


async def _write_queued(conn: Connection, peer: WebSocketPeer, write_timeout: float) -> None:
    """Write queued messages in order until none is left; then the close frame, if it closed.

    Started by :meth:`_Flusher.start_writer` when there is work the flush
    callback leaves to it, and ends when it is done: an idle WebSocket has no
    writer task (a task and its coroutine cost about 1 KiB per connection).
    """
    while (message := conn.take()) is not None:
        try:
            await _send(peer, message, write_timeout)
            conn.recorder.message_out("websocket")
        except TimeoutError:
            _stalled(conn, peer)
            return
        except _SEND_ERRORS:
            conn.requeue(message)  # kept for the next connection, if the session resumes
            peer.abort()  # and the reader sees the drop
            return
    if conn.closed and not peer.failed:
        # The reader ends on CLOSING and waits for the peer's close frame.
        peer.send_close(conn.close_code)
        peer.wake_reader()


# The transport pauses (and a write must wait) only past its high-water mark
# (64 KiB buffered). A frame of at most this many characters (64,000 bytes of
# UTF-8) written while nothing is buffered cannot pause it, so it is sent
# without a timer: a timer per message costs more than the write itself.
_UNTIMED_MAX_CHARS = 16_000


def _write_now(peer: WebSocketPeer, text: str) -> bool:
    """Write ``text`` as one text frame at once if the write cannot wait on the peer.

    False, writing nothing, when it might wait (a big message, something
    buffered) or cannot be written (a closing socket): :func:`_send` decides.
    """
    transport = peer.transport
    if (
        len(text) > _UNTIMED_MAX_CHARS
        or transport.get_write_buffer_size()
        or transport.is_closing()
        or peer.close_sent
    ):
        return False
    try:
        data = text.encode("utf-8")  # utf8(text), without a call for the usual case
    except UnicodeEncodeError:
        data = utf8(text)
    transport.write(frames.text(data))
    return True


async def _send(peer: WebSocketPeer, text: str, timeout: float) -> None:
    """Send one text frame; TimeoutError if the peer has not taken it within ``timeout``.

    ConnectionResetError if the socket is closing or our close frame is sent.
    """
    if _write_now(peer, text):
        return
    if not peer.writable():
        raise ConnectionResetError("the WebSocket is closing")
    peer.write(frames.text(utf8(text)))
    async with asyncio.timeout(timeout):
        await peer.drain()


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

    Every writer on the socket (this flush, the reader's direct reply, the
    writer task, pings, pongs, the close frame) hands whole frames to the
    transport without suspending in between, so frames never interleave.
    """

    __slots__ = ("batch", "conn", "peer", "scheduled", "write_timeout", "writer")

    def __init__(self, conn: Connection, peer: WebSocketPeer, write_timeout: float) -> None:
        self.conn = conn
        self.peer = peer
        self.write_timeout = write_timeout
        self.scheduled = False
        self.batch = _Batch.of_running_loop()
        self.writer: asyncio.Task[None] | None = None

    def __call__(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            batch = self.batch  # joins the loop's next flush (one callback for all)
            if not batch.pending:
                batch.loop.call_soon(batch.run)
            batch.pending.append(self)

    def start_writer(self) -> None:
        """The session's ``on_wake``: start the writer task if it has work and is not running.

        A running writer takes everything queued before it ends (it ends only
        once the queue is empty, with no await between that check and its
        end), so a wake while it runs needs nothing more.
        """
        conn = self.conn
        if (self.writer is None or self.writer.done()) and (conn.outbox or conn.closed):
            self.writer = asyncio.get_running_loop().create_task(
                _write_queued(conn, self.peer, self.write_timeout)
            )

    def flush(self) -> None:
        self.scheduled = False
        conn = self.conn
        outbox = conn.outbox
        peer = self.peer
        transport = peer.transport
        if (
            len(outbox) == 1
            and conn.core.replay is None
            and not conn.closed
            and not peer.close_sent
            and not transport.is_closing()
            and not transport.get_write_buffer_size()
        ):
            # One message, as a broadcast leaves in each of its sessions: the
            # loop below without its lists, and the frame made once for all of
            # the broadcast's sessions (the same str in each).
            message = outbox.peek()
            assert message is not None  # len(outbox) == 1
            batch = self.batch
            if message is batch.last_text:
                frame = batch.last_frame
            else:
                data = utf8(message)  # once per broadcast: the call costs nothing here
                frame = frames.text(data) if len(data) <= _FLUSH_MAX_BYTES else b""
                batch.last_text, batch.last_frame = message, frame
            if frame:
                outbox.take()
                transport.write(frame)
                conn.recorder.message_out("websocket", 1)
            if outbox or conn.closed:
                conn.wake_writer()
            return
        # core.take counts the message as sent for a counting client's replay;
        # without one, the outbox's own take is all it would do.
        take = outbox.take if conn.core.replay is None else conn.core.take
        while (
            outbox
            and not conn.closed
            and not peer.close_sent
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

    __slots__ = ("__weakref__", "last_frame", "last_text", "loop", "pending")

    _of_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batch]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[_Flusher] = []
        # The last one-message flush's text and frame, kept for one run: a
        # broadcast puts the same str in every session.
        self.last_text: str | None = None
        self.last_frame = b""

    @classmethod
    def of_running_loop(cls) -> _Batch:
        loop = asyncio.get_running_loop()
        batch = cls._of_loop.get(loop)
        if batch is None:
            batch = cls._of_loop[loop] = cls(loop)
        return batch

    def run(self) -> None:
        pending, self.pending = self.pending, []
        try:
            for flusher in pending:
                try:
                    flusher.flush()
                except Exception:  # never leave the other sessions unflushed
                    logger.exception("websocket flush failed")
                    flusher.conn.wake_writer()
        finally:
            self.last_text, self.last_frame = None, b""  # hold no message between runs


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

    __slots__ = ("conn", "interval", "peer", "pinged_at", "sweep")

    def __init__(
        self, conn: Connection, peer: WebSocketPeer, interval: float, sweep: Sweep
    ) -> None:
        self.conn = conn
        self.peer = peer
        self.interval = interval
        self.pinged_at: float | None = None
        self.sweep = sweep
        sweep.add(self)

    def stop(self) -> None:
        self.sweep.discard(self)

    def check(self, now: float) -> None:
        conn = self.conn
        if conn.closed or self.peer.close_sent:
            return  # the reader ends it, and stop() takes it off the sweep
        if self.pinged_at is not None:
            if conn.last_active < self.pinged_at:  # no answer yet
                if now - self.pinged_at >= self.interval / 2:
                    log_event(
                        logging.INFO, "websocket_dead_peer", session=session_hash(conn.session_id)
                    )
                    self.sweep.discard(self)
                    self.peer.abort()  # a drop: the reader detaches (or ends) the session
                return
            self.pinged_at = None
        if now - conn.last_active >= self.interval:
            self.pinged_at = now
            self.peer.ping()  # a peer that does not read gets no pong back: dropped above


async def _close_socket(peer: WebSocketPeer, code: int, opts: Options) -> bool:
    """Send the close frame and wait for the answer; False if that stalled or failed."""
    try:
        return await peer.close(code, opts.write_timeout)
    except _SEND_ERRORS:
        return False


def _stalled(conn: Connection, peer: WebSocketPeer) -> None:
    """A peer that took nothing within the write timeout: the session ends with 1008.

    The socket is dropped rather than closed: a close frame cannot get past
    what the peer does not read.
    """
    reject("slow_consumer", "write_timeout", transport="websocket", session_id=conn.session_id)
    conn.close(CloseReason.POLICY)
    peer.abort()
