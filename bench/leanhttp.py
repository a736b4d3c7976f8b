"""A lean HTTP/1.1 client for the polling adapters: one request at a time per lane.

The polling rows of ``bench/run.py`` measure servers, so the load generator
must cost much less per request than the cheapest of them. aiohttp's
``ClientSession`` costs about as much per request as a server does (a request
object, a response object, header multidicts, a connector lookup, a task per
body read): driving 50 long-polling clients it saturates its core at about the
servers' own rate, and the rows then measure the client and its noise.

A :class:`Lane` is one keep-alive connection on a bare ``asyncio.Protocol``:
the adapter hands it the request's bytes (built once per cookie change, see
:func:`request_head`), and gets back the status, the ``Set-Cookie`` lines and
the body. It understands what these servers send: ``Content-Length``,
``chunked``, a body ended by the close (HTTP/1.0 style), 1xx-free answers,
and ``Connection: close`` (cowboy 1.0 says it after 100 requests on one
connection), after which the next request opens a new connection, as a
browser's XHR would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from yarl import URL

# A head bigger than this is no answer any of these servers sends.
MAX_HEAD = 64 * 1024


class HTTPError(ConnectionError):
    """The connection broke, or the server sent something this client cannot read."""


class Reply:
    """What one request got back."""

    __slots__ = ("body", "content_type", "cookies", "status")

    def __init__(
        self, status: int, cookies: tuple[str, ...], content_type: str, body: bytes
    ) -> None:
        self.status = status
        self.cookies = cookies
        self.content_type = content_type
        self.body = body

    def text(self) -> str:
        return self.body.decode("utf-8")


def request_head(method: str, url: URL, headers: Mapping[str, str], length: int | None) -> bytes:
    """The request line and headers; ``length`` is the body's, or None for no body."""
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1", f"Host: {url.raw_host}:{url.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Parser:
    """The state of one answer being read."""

    __slots__ = ("chunked", "content_type", "cookies", "keep_alive", "length", "status")

    def __init__(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise HTTPError(f"not an HTTP answer: {lines[0][:60]!r}")
        self.status = int(status_line[1])
        self.keep_alive = status_line[0] == b"HTTP/1.1"
        self.length: int | None = None
        self.chunked = False
        self.content_type = ""
        cookies: list[str] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                self.length = int(value)
            elif name == b"transfer-encoding":
                self.chunked = value.lower().endswith(b"chunked")
            elif name == b"connection":
                token = value.lower()
                if token == b"close":
                    self.keep_alive = False
                elif token == b"keep-alive":
                    self.keep_alive = True
            elif name == b"set-cookie":
                cookies.append(value.decode("latin-1"))
            elif name == b"content-type":
                self.content_type = value.split(b";", 1)[0].strip().decode("latin-1")
        if self.status in (204, 304) or 100 <= self.status < 200:
            self.length, self.chunked = 0, False
        self.cookies = tuple(cookies)


def _dechunk(buffer: bytearray) -> tuple[bytes, int] | None:
    """The body and the bytes it took, once the whole chunked body is in ``buffer``."""
    body = bytearray()
    at = 0
    while True:
        end = buffer.find(b"\r\n", at)
        if end < 0:
            return None
        size = int(bytes(buffer[at:end]).split(b";", 1)[0], 16)
        at = end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", at)
            while trailer_end > at:  # skip trailers, up to the empty line
                at = trailer_end + 2
                trailer_end = buffer.find(b"\r\n", at)
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 2
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


class _Connection(asyncio.Protocol):
    """One TCP connection of a lane: reads the answer to the request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = False
        self.answers = 0  # answers read whole on this connection
        self.heard = False  # any byte of the answer to the request in flight
        self.waiter: asyncio.Future[Reply] | None = None
        self._buffer = bytearray()
        self._parser: _Parser | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.heard = True
        self._buffer += data
        try:
            self._parse(closed=False)
        except (ValueError, HTTPError) as exc:
            self._fail(HTTPError(str(exc)))

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost ends a body read to the close

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reusable = False
        try:
            self._parse(closed=True)
        except (ValueError, HTTPError) as error:
            self._fail(HTTPError(str(error)))
        self._fail(HTTPError(f"connection closed: {exc}"))

    def send(self, data: bytes, waiter: asyncio.Future[Reply]) -> None:
        assert self.transport is not None
        self.reusable = False
        self.heard = False
        self.waiter = waiter
        self.transport.write(data)

    def close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()

    def _parse(self, *, closed: bool) -> None:
        buffer = self._buffer
        parser = self._parser
        if parser is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise HTTPError("answer head too long")
                return
            parser = self._parser = _Parser(bytes(buffer[:end]))
            del buffer[: end + 4]
        if parser.chunked:
            done = _dechunk(buffer)
            if done is None:
                return
            body, used = done
        elif parser.length is not None:
            if len(buffer) < parser.length:
                return
            body, used = bytes(buffer[: parser.length]), parser.length
        elif closed:
            body, used = bytes(buffer), len(buffer)
        else:
            return  # this body ends when the server closes
        del buffer[:used]
        self._parser = None
        if buffer:
            raise HTTPError("bytes after the answer to the one request in flight")
        self.reusable = parser.keep_alive and (parser.length is not None or parser.chunked)
        self.answers += 1
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Reply(parser.status, parser.cookies, parser.content_type, body))
        if not self.reusable:
            self.close()

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()


class Lane:
    """Requests to one server, one at a time, on a kept-alive connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._connection: _Connection | None = None
        self._busy = False

    async def request(self, head: bytes, body: bytes = b"") -> Reply:
        """Send one request (``head`` from :func:`request_head`) and read its answer."""
        if self._busy:
            raise RuntimeError("one request at a time on a lane")
        self._busy = True
        data = head + body if body else head
        try:
            loop = asyncio.get_running_loop()
            connection = self._connection
            if connection is None or connection.transport is None or not connection.reusable:
                connection = await self._reconnect()
            waiter: asyncio.Future[Reply] = loop.create_future()
            connection.send(data, waiter)
            try:
                return await waiter
            except HTTPError:
                # A kept-alive connection the server closed as the request left
                # (cowboy closes one idle for 5 s): like a browser, send it again
                # once on a new connection, if not a byte of an answer came back.
                if connection.answers == 0 or connection.heard:
                    raise
            connection = await self._reconnect()
            waiter = loop.create_future()
            connection.send(data, waiter)
            return await waiter
        finally:
            self._busy = False

    async def _reconnect(self) -> _Connection:
        if self._connection is not None:
            self._connection.close()
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port)
        self._connection = connection
        return connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
