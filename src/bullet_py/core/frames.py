"""WebSocket frames as a server writes them (RFC 6455 §5.2), without I/O.

Every frame built here is final (FIN set), unmasked (servers never mask) and
carries no extension bits (compression is never negotiated). The payload
length takes 7 bits below 126, 16 bits below 65536 and 64 bits above.

Control frames (ping, pong, close) carry at most 125 bytes (§5.5); a close
frame's body is a 2-byte code then a UTF-8 reason (§5.5.1), and only the codes
an endpoint may send (§7.4) are accepted. Asking for anything else is a bug in
the caller, so it raises ValueError rather than putting a bad frame on the wire.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

_FIN = 0x80

MAX_HEADER_SIZE = 10
"""The longest header a server frame has: 2 bytes, then a 64-bit length."""

MAX_CONTROL_PAYLOAD = 125

_PACK_SHORT = struct.Struct("!BB").pack
_PACK_MEDIUM = struct.Struct("!BBH").pack
_PACK_LONG = struct.Struct("!BBQ").pack
_PACK_CODE = struct.Struct("!H").pack

# The first byte of a text frame, and its 2-byte headers by payload size:
# a message shorter than 126 bytes (most of them) costs a lookup, not a pack.
_TEXT = _FIN | TEXT
_SHORT_TEXT_HEADERS = tuple(_PACK_SHORT(_TEXT, size) for size in range(126))

# Codes an endpoint may put in a close frame: the ones §7.4.1 defines for use
# (1004, 1005, 1006 and 1015 are not), those IANA registered since (1012 to
# 1014), and the ranges left to libraries (3000-3999) and applications.
_SENDABLE_CLOSE_CODES = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)


def header(opcode: int, size: int) -> bytes:
    """The header of a final, unmasked frame with ``size`` bytes of payload."""
    first = _FIN | opcode
    if size < 126:
        return _PACK_SHORT(first, size)
    if size < 65536:
        return _PACK_MEDIUM(first, 126, size)
    return _PACK_LONG(first, 127, size)


def text_header(size: int) -> bytes:
    """The header of a text frame with ``size`` bytes of (UTF-8) payload."""
    if size < 126:
        return _SHORT_TEXT_HEADERS[size]
    if size < 65536:
        return _PACK_MEDIUM(_TEXT, 126, size)
    return _PACK_LONG(_TEXT, 127, size)


def text(data: bytes) -> bytes:
    """One text frame carrying ``data``, which must be UTF-8."""
    return text_header(len(data)) + data


def texts(payloads: Iterable[bytes]) -> bytes:
    """Text frames for each of ``payloads`` in turn, as one buffer for one write.

    Many small frames in one write cost one system call instead of one each.
    """
    parts: list[bytes] = []
    append = parts.append
    short = _SHORT_TEXT_HEADERS
    for data in payloads:
        size = len(data)
        if size < 126:
            append(short[size])
        elif size < 65536:
            append(_PACK_MEDIUM(_TEXT, 126, size))
        else:
            append(_PACK_LONG(_TEXT, 127, size))
        append(data)
    return b"".join(parts)


def ping(payload: bytes = b"") -> bytes:
    """A ping frame; the peer answers with a pong carrying the same payload."""
    return _control(PING, payload)


def pong(payload: bytes = b"") -> bytes:
    """A pong frame, the answer to a ping (it echoes the ping's payload)."""
    return _control(PONG, payload)


def close(code: int, reason: str = "") -> bytes:
    """A close frame with status ``code`` and a ``reason`` of at most 123 bytes of UTF-8."""
    if not is_sendable_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    return _control(CLOSE, _PACK_CODE(code) + reason.encode("utf-8"))


def is_sendable_close_code(code: int) -> bool:
    """True for a status code an endpoint may send in a close frame (§7.4)."""
    return code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999


def _control(opcode: int, payload: bytes) -> bytes:
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise ValueError(
            f"control frame payload is {len(payload)} bytes; at most {MAX_CONTROL_PAYLOAD}"
        )
    return _PACK_SHORT(_FIN | opcode, len(payload)) + payload
