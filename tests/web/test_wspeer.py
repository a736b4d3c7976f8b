"""A WebSocket leaves aiohttp after its handshake (web/wspeer.py): what that relies on.

The handshake is written by aiohttp and must be the bytes its own
``WebSocketResponse`` writes; once it is, aiohttp forgets the connection
without closing it, whatever the server's ``handler_cancellation``; what the
client sent with (or right after) its handshake request is read; the
request stays usable for the application.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from typing import ClassVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bullet_py import Connection, Handler
from bullet_py.web.websocket import PROTOCOL_FRESH
from tests.helpers import make_app, wait_for

_TIMEOUT = 5.0


def _handshake_request(path: str = "/bullet", protocols: str | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    return (
        struct.pack("!BB", 0x81, 0x80 | len(payload))
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _TIMEOUT)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await asyncio.wait_for(reader.readexactly(2), _TIMEOUT)
    size = second & 0x7F
    assert size < 126 and not second & 0x80  # short, unmasked: what these tests send back
    return first & 0x0F, await asyncio.wait_for(reader.readexactly(size), _TIMEOUT)


def _normalised(head: bytes) -> list[str]:
    """The head's lines, with the values that differ between two answers blanked."""
    lines = []
    for line in head.decode().split("\r\n"):
        name = line.split(":", 1)[0].lower()
        if name in ("date", "sec-websocket-accept"):
            line = f"{line.split(':', 1)[0]}: -"
        lines.append(line)
    return lines


async def _aiohttp_handshake(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=(PROTOCOL_FRESH,), compress=False, heartbeat=None)
    await ws.prepare(request)
    async for _ in ws:
        pass
    return ws


@pytest.mark.parametrize("protocols", [None, f"other, {PROTOCOL_FRESH}", "other"])
async def test_the_handshake_is_the_bytes_aiohttp_writes(aiohttp_server, protocols):
    reference = web.Application()
    reference.router.add_get("/bullet", _aiohttp_handshake)
    # No session cookie (it is the one header aiohttp's answer has not): the
    # original client's sessions do not resume by one.
    app, _ = make_app(resumable=())
    heads = []
    for server in (await aiohttp_server(reference), await aiohttp_server(app)):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(_handshake_request(protocols=protocols))
            heads.append(_normalised(await _read_head(reader)))
        finally:
            writer.close()
    assert heads[0][0] == "HTTP/1.1 101 Switching Protocols"
    assert heads[1] == heads[0]


async def test_aiohttp_forgets_the_socket_and_the_session_goes_on(aiohttp_server):
    app, endpoint = make_app()
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_handshake_request())
        await _read_head(reader)
        await wait_for(lambda: len(endpoint.registry) == 1)
        assert server.handler is not None
        await wait_for(lambda: not server.handler.connections)  # aiohttp let go of it
        writer.write(_masked_text("still here"))
        assert await _read_frame(reader) == (0x1, b"still here")
    finally:
        writer.close()


async def test_handler_cancellation_does_not_close_the_socket():
    """With ``handler_cancellation``, aiohttp cancels the handler of a lost connection:
    the release must not make it close the socket it no longer owns."""
    app, endpoint = make_app()
    server = TestServer(app, host="127.0.0.1", handler_cancellation=True)
    await server.start_server()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(_handshake_request())
            await _read_head(reader)
            await wait_for(lambda: len(endpoint.registry) == 1)
            for text in ("one", "two"):
                writer.write(_masked_text(text))
                assert await _read_frame(reader) == (0x1, text.encode())
        finally:
            writer.close()
    finally:
        await server.close()


async def test_a_frame_sent_with_the_handshake_request_is_read(aiohttp_server):
    app, _ = make_app()
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_handshake_request() + _masked_text("early"))  # one write, one read
        await _read_head(reader)
        assert await _read_frame(reader) == (0x1, b"early")
    finally:
        writer.close()


async def test_an_unmasked_frame_sent_with_the_handshake_fails_after_the_101(aiohttp_server):
    app, endpoint = make_app()
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_handshake_request() + struct.pack("!BB", 0x81, 2) + b"hi")
        head = await _read_head(reader)
        assert head.startswith(b"HTTP/1.1 101 ")
        opcode, payload = await _read_frame(reader)
        assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 1002)
        assert await asyncio.wait_for(reader.read(), _TIMEOUT) == b""
        await wait_for(lambda: len(endpoint.registry) == 0)
    finally:
        writer.close()


class _Remembers(Handler):
    seen: ClassVar[list[object]] = []

    async def on_message(self, conn: Connection, message: str) -> str:
        request = conn.request
        transport = request.transport
        self.seen.append(transport)
        return f"{request.headers['X-Marker']} {transport.get_extra_info('peername')[0]}"


async def test_the_request_stays_usable_with_its_transport(aiohttp_server):
    _Remembers.seen = []
    app, _ = make_app(handler=_Remembers)
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        request = _handshake_request().replace(b"\r\n\r\n", b"\r\nX-Marker: hello\r\n\r\n")
        writer.write(request)
        await _read_head(reader)
        writer.write(_masked_text("who"))
        assert await _read_frame(reader) == (0x1, b"hello 127.0.0.1")
        assert _Remembers.seen[0] is not None
    finally:
        writer.close()


async def test_a_middleware_sees_the_101_and_returns_before_the_socket_ends(aiohttp_server):
    seen: list[tuple[int, bool]] = []

    @web.middleware
    async def note(request: web.Request, handler):  # type: ignore[no-untyped-def]
        response = await handler(request)
        seen.append((response.status, response.prepared))
        return response

    app, endpoint = make_app()
    app.middlewares.append(note)
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_handshake_request())
        await _read_head(reader)
        await wait_for(lambda: seen == [(101, True)])
        writer.write(_masked_text("after"))
        assert await _read_frame(reader) == (0x1, b"after")
        assert len(endpoint.registry) == 1
    finally:
        writer.close()


def _masked_ping(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return (
        struct.pack("!BB", 0x89, 0x80 | len(payload))
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


async def test_a_client_that_pings_and_never_reads_is_dropped_not_buffered(aiohttp_server):
    """Every ping gets a pong; a client that never reads them is dropped after the
    write timeout once the socket's buffer is full, instead of the pongs piling up."""
    app, endpoint = make_app(ws_control_rate=None, write_timeout=1.0)
    server = await aiohttp_server(app)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", server.port)), _TIMEOUT)
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(_handshake_request())
        await _read_head(reader)
        await wait_for(lambda: len(endpoint.registry) == 1)
        (conn,) = list(endpoint.registry)
        server_side = conn.request.transport.get_extra_info("socket")
        server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        burst = _masked_ping(b"p" * 125) * 100  # 13 KiB in, 12.7 KiB of pongs out
        for _ in range(200):  # 2.5 MiB of pongs if nothing stopped them
            if not conn.attached:
                break
            writer.write(burst)
            await asyncio.wait_for(writer.drain(), _TIMEOUT)
        await wait_for(lambda: not conn.attached, timeout=10.0)
    except ConnectionError:
        pass  # dropped while we were still sending: what is expected
    finally:
        writer.close()
    assert not conn.attached
