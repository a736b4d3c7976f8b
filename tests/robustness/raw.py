"""Raw-socket clients: bytes exactly as a test wants them, malformed ones included.

aiohttp's own client refuses to send broken frames or smuggling headers, so the
attacks in docs/robustness.md groups B, C, G and H go through these instead.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from dataclasses import dataclass, field

WS_KEY = base64.b64encode(b"bullet-py-robust").decode()

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass
class Head:
    """Status line and headers of one HTTP response."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


def client_socket(rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking TCP socket, with a small receive buffer if asked (slow readers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    return sock


class RawConnection:
    """One TCP connection with helpers to write requests and parse answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls,
        port: int,
        host: str = "127.0.0.1",
        *,
        rcvbuf: int | None = None,
        sock: socket.socket | None = None,
    ) -> RawConnection:
        """Connect; ``sock`` (already connected, e.g. made in a netns) is used as is."""
        if sock is None:
            sock = client_socket(rcvbuf)
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**22)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_head(self, timeout: float = 10.0) -> Head:
        """Read one response's status line and headers."""
        async with asyncio.timeout(timeout):
            raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                key = name.strip().lower()
                headers[key] = (
                    f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
                )
        return Head(status, headers, raw)

    async def read_body(self, head: Head, timeout: float = 10.0) -> bytes:
        """The body that follows ``head`` (Content-Length or chunked)."""
        async with asyncio.timeout(timeout):
            length = head.get("content-length")
            if length is not None:
                return await self.reader.readexactly(int(length))
            if (head.get("transfer-encoding") or "").lower() == "chunked":
                out = bytearray()
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    chunk = await self.reader.readexactly(size + 2)
                    if size == 0:
                        return bytes(out)
                    out += chunk[:-2]
            return b""

    async def request(self, data: bytes, timeout: float = 10.0) -> tuple[Head, bytes]:
        await self.send(data)
        head = await self.read_head(timeout)
        return head, await self.read_body(head, timeout)

    def stop_reading(self) -> None:
        """Stop taking bytes from the socket: the kernel's small buffer fills, then the
        server's writes stall (a client that never reads)."""
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]

    @property
    def ended(self) -> bool:
        """True once the server closed or reset the connection (seen without reading)."""
        r = self.reader
        return r.at_eof() or r.exception() is not None or self.writer.transport.is_closing()

    async def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True once the server has closed (EOF or reset), reading and discarding the rest."""
        transport = self.writer.transport
        if not transport.is_closing():
            transport.resume_reading()  # type: ignore[attr-defined]
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except (ConnectionError, OSError):
            return True
        except TimeoutError:
            return False
        return True

    def abort(self) -> None:
        """Vanish: reset the connection with no FIN (SO_LINGER 0)."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def http_request(
    method: str,
    path: str = "/bullet",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    host: str = "127.0.0.1",
    content_length: bool = True,
) -> bytes:
    """A request in HTTP/1.1 wire form. Headers are written exactly as given."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in items}
    if "host" not in names:
        items.insert(0, ("Host", host))
    if body and content_length and "content-length" not in names:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items)
    return head.encode("latin-1") + b"\r\n" + body


def ws_handshake(path: str = "/bullet", extra: dict[str, str] | None = None) -> bytes:
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": WS_KEY,
        "Sec-WebSocket-Version": "13",
        **(extra or {}),
    }
    return http_request("GET", path, headers)


def ws_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    declared: int | None = None,
    mask: bool = True,
) -> bytes:
    """One client frame; ``declared`` lies about the payload length."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload) if declared is None else declared
    if length < 126:
        head = struct.pack("!BB", first, (0x80 if mask else 0) | length)
    elif length < 2**16:
        head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, length)
    else:
        head = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])


class RawWebSocket:
    """A WebSocket client on a raw connection: any frame out, server frames in."""

    def __init__(self, conn: RawConnection, head: Head) -> None:
        self.conn = conn
        self.head = head

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        extra: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        sock: socket.socket | None = None,
        host: str = "127.0.0.1",
    ) -> RawWebSocket:
        conn = await RawConnection.open(port, host, rcvbuf=rcvbuf, sock=sock)
        await conn.send(ws_handshake(extra=extra))
        head = await conn.read_head()
        if head.status != 101:
            await conn.close()
            raise AssertionError(f"handshake answered {head.status}")
        return cls(conn, head)

    async def send_frame(self, opcode: int, payload: bytes, **kw: object) -> None:
        await self.conn.send(ws_frame(opcode, payload, **kw))  # type: ignore[arg-type]

    async def send_text(self, text: str) -> None:
        await self.send_frame(OP_TEXT, text.encode("utf-8"))

    async def recv(self, timeout: float = 10.0) -> Frame | None:
        """The next server frame, or None at EOF."""
        r = self.conn.reader
        try:
            async with asyncio.timeout(timeout):
                b1, b2 = await r.readexactly(2)
                length = b2 & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", await r.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", await r.readexactly(8))
                payload = await r.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return Frame(bool(b1 & 0x80), b1 & 0x0F, payload)

    async def recv_text(self, timeout: float = 10.0) -> str:
        """The next text frame (pings are answered, nothing else is expected)."""
        while True:
            frame = await self.recv(timeout)
            if frame is None:
                raise AssertionError("connection ended")
            if frame.opcode == OP_PING:
                await self.send_frame(OP_PONG, frame.payload)
                continue
            if frame.opcode != OP_TEXT:
                raise AssertionError(f"expected text, got opcode {frame.opcode}")
            return frame.payload.decode("utf-8")

    async def close_code(self, timeout: float = 10.0, *, answer: bool = True) -> int | None:
        """Read until the server's close frame; its code (None: EOF without one).

        Like a browser, answer the close (unless ``answer`` is False).
        """
        while True:
            frame = await self.recv(timeout)
            if frame is None:
                return None
            if frame.opcode == OP_CLOSE:
                if answer:
                    try:
                        await self.send_frame(OP_CLOSE, frame.payload[:2])
                    except (ConnectionError, OSError):
                        pass
                return frame.close_code

    async def close(self) -> None:
        await self.conn.close()
