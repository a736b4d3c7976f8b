"""A WebSocket after its handshake: the socket's own protocol, off aiohttp's request machinery.

aiohttp keeps a WebSocket inside the request that opened it for as long as the
socket lives: its connection handler and parser, the handler's two tasks and
their coroutines, the ``WebSocketResponse`` with its reader and writer. That
is about 9.6 KiB of an idle WebSocket's 12.8 (tracemalloc), for a connection
that no longer speaks HTTP. So once the ``101`` is written (by aiohttp, through
its ``prepare``: middlewares' signals and headers as usual), bullet_py takes
the socket over: :class:`WebSocketPeer` becomes the transport's protocol
(``transport.set_protocol``, asyncio's public API), aiohttp is told the
connection is gone (:meth:`WebSocketPeer.release`), and the request's handler
returns at once. The frames are still parsed by aiohttp's own parser
(``aiohttp.http.WebSocketReader`` and its queue), so what a frame means, what
it may hold and the errors a bad one raises are aiohttp's, as before.

What an application sees of it: ``conn.request`` stays the request that opened
the socket (its headers, what middlewares stored on it, ``request.transport``),
and a middleware's code after ``await handler(request)`` runs once the
handshake is written rather than when the socket ends.
``tests/web/test_wspeer.py`` pins what this relies on in the installed aiohttp
(the handshake's bytes, the handler's end leaving the socket open, the
connection dropped from aiohttp's own count).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WebSocketError, WSMessage, WSMsgType, web
from aiohttp.http import WS_CLOSING_MESSAGE, WebSocketReader
from aiohttp.streams import EofStream

from ..core import frames
from ..core.maskcheck import MaskCheck
from ..logs import reject
from .detach import release

if TYPE_CHECKING:
    from ..connection import Connection

try:  # the queue aiohttp's (compiled) parser requires, public only through aiohttp.http_websocket
    from aiohttp._websocket.reader import WebSocketDataQueue
except ImportError:  # pragma: no cover - pyproject.toml bounds aiohttp to a release that has it
    raise ImportError("bullet_py needs aiohttp's WebSocketDataQueue (aiohttp 3.14)") from None

logger = logging.getLogger("bullet_py")

#: What the queue holds before it pauses reading (aiohttp's own figure for a WebSocket).
_QUEUE_LIMIT = 2**16
#: Bytes a client may send before its handshake is written; reading pauses past this.
_PENDING_MAX = 2**16

PROTOCOL_ERROR = 1002
_CLOSED_MESSAGE = WSMessage(WSMsgType.CLOSED, None, None)


class WebSocketPeer(asyncio.Protocol):
    """The protocol of a WebSocket's socket once bullet_py has taken it from aiohttp.

    Reading: every chunk goes through :class:`~bullet_py.core.maskcheck.MaskCheck`
    (RFC 6455 §5.1: a client frame without a mask fails the connection; aiohttp's
    parser accepts them), then to aiohttp's parser, whose messages wait in its
    queue for :meth:`receive` (one reader). The queue pauses the socket past
    64 KiB, as aiohttp's does. Writing: whole frames, straight to the
    transport (:meth:`write`), with :meth:`drain` waiting while the transport
    is paused. Closing: :meth:`send_close`, then :meth:`close` waits for the
    peer's answer; :meth:`fail` for a peer that broke a rule.

    Installed before the handshake is written (:meth:`install`), it keeps what
    the client sends meanwhile and forwards everything else to aiohttp's
    connection handler until :meth:`release`.
    """

    __slots__ = (
        "_drain_waiters",
        "_inner",
        "_pending",
        "_reading_paused",
        "check",
        "close_received",
        "close_sent",
        "conn",
        "failed",
        "parser",
        "queue",
        "transport",
        "writing_paused",
    )

    def __init__(
        self, transport: asyncio.Transport, inner: asyncio.BaseProtocol, max_msg_size: int
    ) -> None:
        self.transport = transport
        self._inner: asyncio.BaseProtocol | None = inner
        self._pending: bytearray | None = bytearray()
        self._reading_paused = False  # read by aiohttp's queue
        self.writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        # The queue calls only pause_reading, resume_reading and _reading_paused of its protocol.
        self.queue = WebSocketDataQueue(
            self,  # type: ignore[arg-type]
            _QUEUE_LIMIT,
            loop=asyncio.get_running_loop(),
        )
        self.parser = WebSocketReader(self.queue, max_msg_size, compress=False, decode_text=True)
        self.check = MaskCheck()
        self.conn: Connection | None = None  # named in a refusal's log line
        self.close_sent = False
        self.close_received = False
        self.failed = False

    @classmethod
    def install(cls, request: web.Request, max_msg_size: int) -> WebSocketPeer | None:
        """Put a peer between the socket and aiohttp's handler; None if the socket is gone."""
        transport = request.transport
        if transport is None or transport.is_closing():
            return None
        inner = transport.get_protocol()
        peer = cls(transport, inner, max_msg_size)
        # What came in the same read as the handshake request: aiohttp keeps
        # it for the parser a WebSocketResponse would install.
        tail = getattr(inner, "_message_tail", b"")
        if tail:
            inner._message_tail = b""  # type: ignore[attr-defined]
            peer._keep(tail)
        transport.set_protocol(peer)
        return peer

    def release(self) -> None:
        """Take the socket from aiohttp for good; call it once the handshake is written.

        Called from the request's handler (see web/detach.py). What the
        client sent meanwhile is read now.
        """
        inner, self._inner = self._inner, None
        transport = self.transport
        if inner is not None:
            paused = bool(getattr(inner, "_reading_paused", False))
            release(inner, transport)
            if paused and not self._reading_paused:
                transport.resume_reading()  # paused by aiohttp for a long tail
        pending, self._pending = self._pending, None
        if self._reading_paused:
            self.resume_reading()
        if pending:
            self.data_received(bytes(pending))

    # --- asyncio.Protocol ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._pending is not None:
            self._keep(data)
            return
        if self.failed:
            return
        if self.check.feed(data):
            self.parser.feed_data(data)
            return
        conn = self.conn
        reject(
            "bad_frame",
            "unmasked",
            transport="websocket",
            session_id=None if conn is None else conn.session_id,
        )
        if conn is not None:
            conn.close(PROTOCOL_ERROR)
        self.fail(PROTOCOL_ERROR, _FAIL_TIMEOUT)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()  # type: ignore[attr-defined,no-any-return]
        return None  # the transport closes; connection_lost ends the reader

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._inner.connection_lost(exc)  # the handshake never finished: aiohttp's
        if not self.queue.is_eof():  # keeps an error the parser raised for the reader
            self.queue.feed_eof()
        self._wake_drainers(ConnectionResetError("the WebSocket's connection is lost"))

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()
        self.writing_paused = True

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()
        self.writing_paused = False
        self._wake_drainers(None)

    # what aiohttp's queue calls for its flow control
    def pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    # --- reading -------------------------------------------------------------

    async def receive(self, timeout: float | None) -> Any:
        """The next message (an aiohttp ``WSMessage``); CLOSED once the connection is gone.

        Raises the parser's ``WebSocketError`` for a frame that breaks the
        protocol, TimeoutError after ``timeout`` seconds without a message.
        """
        try:
            if timeout is None:
                return await self.queue.read()
            async with asyncio.timeout(timeout):
                return await self.queue.read()
        except EofStream:
            return _CLOSED_MESSAGE

    def wake_reader(self) -> None:
        """Have :meth:`receive` return CLOSING: the session closed and its reader should end."""
        self.queue.feed_data(WS_CLOSING_MESSAGE, 0)

    # --- writing -------------------------------------------------------------

    def writable(self) -> bool:
        return not self.close_sent and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def ping(self) -> None:
        if self.writable():
            self.transport.write(frames.ping())

    def pong(self, payload: bytes) -> None:
        if self.writable():
            self.transport.write(frames.pong(payload))

    async def drain(self) -> None:
        """Wait while the transport is paused (the peer reads slower than we write)."""
        if not self.writing_paused:
            return
        if self.transport.is_closing():
            raise ConnectionResetError("the WebSocket's connection is closing")
        waiter = asyncio.get_running_loop().create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._drain_waiters is not None and waiter in self._drain_waiters:
                self._drain_waiters.remove(waiter)

    def _wake_drainers(self, exc: Exception | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    # --- closing -------------------------------------------------------------

    def send_close(self, code: int) -> None:
        """Write the close frame (once); nothing but the peer's close frame is awaited after it."""
        if self.close_sent or self.transport.is_closing():
            return
        self.close_sent = True
        self.transport.write(frames.close(code))

    async def close(self, code: int, timeout: float) -> bool:
        """The closing handshake: our close frame, the peer's, then the socket's end.

        False if the peer's close frame did not come within ``timeout`` (the
        caller drops the connection).
        """
        transport = self.transport
        if transport.is_closing():
            return True
        self.send_close(code)
        if not self.close_received:
            try:
                async with asyncio.timeout(timeout):
                    while (await self.queue.read()).type is not WSMsgType.CLOSE:
                        pass  # what the peer still sends is not read any more
            except TimeoutError:
                return False
            except (EofStream, WebSocketError):
                pass  # gone, or breaking the protocol on its way out: closed anyway
            self.close_received = True
        transport.close()
        return True

    def fail(self, code: int, timeout: float) -> None:
        """Fail the connection (RFC 6455 §7.1.7): a close frame with ``code``, then the end.

        Reading stops at once, so a flood already in the socket is never
        parsed; the close frame drains, or the connection is dropped after
        ``timeout``. For a peer that broke a rule, not for an orderly close.
        """
        transport = self.transport
        if transport.is_closing():
            return
        self.failed = True
        self.send_close(code)
        transport.close()
        asyncio.get_running_loop().call_later(timeout, transport.abort)
        if not self.queue.is_eof():
            self.queue.feed_eof()  # a reader waiting for a message ends

    def abort(self) -> None:
        """Drop the connection, discarding what is buffered for a peer that does not read."""
        self.transport.abort()

    def _keep(self, data: bytes) -> None:
        pending = self._pending
        assert pending is not None
        pending += data
        if len(pending) > _PENDING_MAX:
            self.pause_reading()  # resumed by release()


_FAIL_TIMEOUT = 10.0  # a failed connection's close frame gets this long to drain
