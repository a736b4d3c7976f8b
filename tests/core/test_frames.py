"""Server WebSocket frames: RFC 6455's own examples, and aiohttp's writer byte for byte.

The WebSocket transport writes every frame with core.frames (web/websocket.py,
web/wspeer.py), and the views of remote sessions (web/view.py) write theirs with
aiohttp's writer. The tests against aiohttp's writer keep the two the same: they
fail the day the installed aiohttp writes other bytes for the same frame.
"""

from __future__ import annotations

import struct
from collections.abc import Coroutine
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.http_websocket import WebSocketWriter

from bullet_py.connection import CloseReason
from bullet_py.core import frames

HELLO = b"\x48\x65\x6c\x6c\x6f"


def parse(buf: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each frame in ``buf``, checking it is a valid server frame.

    Valid means final, no extension bits, unmasked, and with its length in the
    fewest bytes (RFC 6455 §5.2 requires the minimal encoding).
    """
    out = []
    pos = 0
    while pos < len(buf):
        first, second = buf[pos], buf[pos + 1]
        assert first & 0x80, "FIN clear"
        assert not first & 0x70, "RSV bits set"
        assert not second & 0x80, "server frame masked"
        opcode = first & 0x0F
        size = second & 0x7F
        pos += 2
        if size == 126:
            (size,) = struct.unpack_from("!H", buf, pos)
            assert size >= 126, "16-bit length for a 7-bit size"
            pos += 2
        elif size == 127:
            (size,) = struct.unpack_from("!Q", buf, pos)
            assert 65536 <= size < 2**63, "64-bit length out of its range"
            pos += 8
        if opcode >= 0x8:
            assert size <= 125, "control frame too long"
        payload = buf[pos : pos + size]
        assert len(payload) == size, "truncated frame"
        out.append((opcode, payload))
        pos += size
    return out


# --- RFC 6455 §5.7 examples --------------------------------------------------------------------


def test_rfc_unmasked_text_hello():
    assert frames.text(HELLO) == bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])


def test_rfc_unmasked_ping_hello():
    assert frames.ping(HELLO) == bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])


def test_unmasked_pong_hello():
    # The RFC's pong example is the client's, masked; unmasked it is the ping's with 0xA.
    assert frames.pong(HELLO) == bytes([0x8A, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])


def test_rfc_256_bytes_binary_and_the_same_length_as_text():
    assert frames.header(frames.BINARY, 256) == bytes([0x82, 0x7E, 0x01, 0x00])
    assert frames.text_header(256) == bytes([0x81, 0x7E, 0x01, 0x00])
    assert frames.text(b"a" * 256) == bytes([0x81, 0x7E, 0x01, 0x00]) + b"a" * 256


def test_rfc_64kib_binary_and_the_same_length_as_text():
    long_length = bytes([0x7F, 0, 0, 0, 0, 0, 0x01, 0, 0])
    assert frames.header(frames.BINARY, 65536) == b"\x82" + long_length
    assert frames.text_header(65536) == b"\x81" + long_length


# --- lengths --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "encoded"),
    [
        (0, b"\x81\x00"),
        (1, b"\x81\x01"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (127, b"\x81\x7e\x00\x7f"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (2**32 + 5, b"\x81\x7f\x00\x00\x00\x01\x00\x00\x00\x05"),
        (2**63 - 1, b"\x81\x7f\x7f\xff\xff\xff\xff\xff\xff\xff"),
    ],
)
def test_text_header_boundaries(size, encoded):
    assert frames.text_header(size) == encoded
    assert frames.header(frames.TEXT, size) == encoded
    assert len(encoded) <= frames.MAX_HEADER_SIZE


@pytest.mark.parametrize("size", [0, 5, 125, 126, 127, 1000, 65535, 65536, 70_000])
def test_text_round_trips(size):
    data = bytes(i % 251 for i in range(size))
    assert parse(frames.text(data)) == [(frames.TEXT, data)]


def test_texts_is_the_frames_one_after_another():
    payloads = [b"", HELLO, b"x" * 125, b"y" * 126, "é😀".encode(), b"z" * 65535, b"w" * 65536]
    packed = frames.texts(payloads)
    assert packed == b"".join(frames.text(data) for data in payloads)
    assert parse(packed) == [(frames.TEXT, data) for data in payloads]


def test_texts_of_nothing_is_empty():
    assert frames.texts([]) == b""


# --- control frames -------------------------------------------------------------------------------


def test_close_layout():
    assert frames.close(1000) == b"\x88\x02\x03\xe8"
    assert frames.close(1001, "bye") == b"\x88\x05\x03\xe9bye"
    assert frames.close(4000, "é") == b"\x88\x04\x0f\xa0\xc3\xa9"
    assert parse(frames.close(1009, "too big")) == [(frames.CLOSE, b"\x03\xf1too big")]


def test_empty_ping_and_pong():
    assert frames.ping() == b"\x89\x00"
    assert frames.pong() == b"\x8a\x00"


@pytest.mark.parametrize("build", [frames.ping, frames.pong])
def test_control_payload_limit(build):
    assert parse(build(b"p" * 125))[0][1] == b"p" * 125
    with pytest.raises(ValueError, match="125"):
        build(b"p" * 126)


def test_close_reason_limit_counts_utf8_bytes_after_the_code():
    assert len(frames.close(1000, "r" * 123)) == 2 + 125
    with pytest.raises(ValueError, match="125"):
        frames.close(1000, "r" * 124)
    # 62 two-byte characters are 124 bytes: one too many.
    assert len(frames.close(1000, "é" * 61 + "r")) == 2 + 125
    with pytest.raises(ValueError, match="125"):
        frames.close(1000, "é" * 62)


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
)
def test_sendable_close_codes(code):
    assert frames.is_sendable_close_code(code)
    assert frames.close(code)[2:] == struct.pack("!H", code)


@pytest.mark.parametrize(
    "code", [-1, 0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535, 65536]
)
def test_unsendable_close_codes_are_refused(code):
    assert not frames.is_sendable_close_code(code)
    with pytest.raises(ValueError, match="close code"):
        frames.close(code)


def test_every_session_close_reason_is_sendable():
    codes = [value for name, value in vars(CloseReason).items() if name.isupper()]
    assert codes
    for code in codes:
        assert frames.is_sendable_close_code(code), code


# --- byte for byte against aiohttp's writer -------------------------------------------------------


class _Wire:
    """A transport keeping what is written, one entry per write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)


class _Yield:
    def __await__(self):
        yield


class _Protocol:
    """What aiohttp's writer reads of its protocol: whether writing is paused."""

    def __init__(self, paused: bool = False) -> None:
        self._paused = paused
        self.drains = 0

    async def _drain_helper(self) -> None:
        self.drains += 1
        await _Yield()  # a paused transport: the writer waits here


def _writer(wire: _Wire, protocol: _Protocol | None = None, **kwargs: Any) -> WebSocketWriter:
    # A server's writer, as aiohttp's WebSocketResponse makes it with compression off.
    return WebSocketWriter(protocol or _Protocol(), wire, **kwargs)  # type: ignore[arg-type]


def _finish_without_waiting(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro``, which must complete without ever suspending."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise AssertionError("aiohttp's writer waited on a transport that is not paused")


def aiohttp_frame(opcode: WSMsgType, payload: bytes) -> bytes:
    """What aiohttp writes for one frame (ws.send_str, ws.ping and ws.pong call this)."""
    wire = _Wire()
    _finish_without_waiting(_writer(wire).send_frame(payload, opcode))
    return wire.data


def aiohttp_close(code: int, message: bytes = b"") -> bytes:
    """What aiohttp writes for ws.close(code=..., message=...)."""
    wire = _Wire()
    _finish_without_waiting(_writer(wire).close(code, message))
    return wire.data


TEXTS = [
    "",
    "a",
    "Hello",
    "x" * 125,
    "x" * 126,
    "x" * 127,
    "x" * 2**14,  # aiohttp writes a payload above 2**14 bytes apart from its header
    "x" * (2**14 + 1),
    "x" * 65535,
    "x" * 65536,
    "x" * 100_000,
    "é",
    "é" * 63,  # 126 bytes from 63 characters
    "😀" * 16_384,  # 65536 bytes
    "\u2028\x00\ufeff",
    '[1,"é😀",{"k":"\\u0000"}]' * 50,
]


@pytest.mark.parametrize("message", TEXTS, ids=lambda m: f"{len(m)}ch/{len(m.encode())}B")
def test_text_frame_equals_aiohttps(message):
    data = message.encode("utf-8")
    assert frames.text(data) == aiohttp_frame(WSMsgType.TEXT, data)


def test_texts_equals_aiohttps_frames_in_turn():
    wire = _Wire()
    writer = _writer(wire)
    payloads = [message.encode() for message in TEXTS]
    for data in payloads:
        _finish_without_waiting(writer.send_frame(data, WSMsgType.TEXT))
    assert frames.texts(payloads) == wire.data


@pytest.mark.parametrize("payload", [b"", HELLO, "é".encode(), b"\x00" * 125])
def test_ping_and_pong_equal_aiohttps(payload):
    assert frames.ping(payload) == aiohttp_frame(WSMsgType.PING, payload)
    assert frames.pong(payload) == aiohttp_frame(WSMsgType.PONG, payload)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (1000, ""),
        (1001, ""),
        (1008, ""),
        (1009, ""),
        (1011, "internal error"),
        (3000, "é😀"),
        (4999, "r" * 123),
    ],
    ids=lambda v: f"{len(v)}ch" if isinstance(v, str) else str(v),
)
def test_close_equals_aiohttps(code, reason):
    assert frames.close(code, reason) == aiohttp_close(code, reason.encode())


def test_close_for_each_session_close_reason_equals_aiohttps():
    # What the WebSocket transport sends: ws.close(code=conn.close_code), no reason.
    codes = [value for name, value in vars(CloseReason).items() if name.isupper()]
    for code in codes:
        assert frames.close(code) == aiohttp_close(code)


@pytest.mark.parametrize("size", [10, 2**14 + 1, 70_000])
def test_aiohttp_writes_a_whole_frame_before_it_waits(size):
    """The flusher writes between aiohttp's frames, never inside one.

    That holds while aiohttp hands a frame to the transport whole before it
    can suspend (to wait for a paused transport to drain): a flush runs from a
    loop callback, so only at a suspension.
    """
    wire = _Wire()
    protocol = _Protocol(paused=True)
    writer = _writer(wire, protocol, limit=0)  # past the limit at once: the writer drains
    data = b"x" * size
    coro = writer.send_frame(data, WSMsgType.TEXT)
    coro.send(None)  # suspends in the drain
    try:
        assert protocol.drains == 1
        assert wire.data == frames.text(data)
    finally:
        coro.close()
