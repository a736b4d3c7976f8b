"""A strict stand-in for BERT-JS 2016's ``Bert.decode``, for tests only.

It accepts exactly what a BERT-JS 2016 page can read back *unaltered*
(docs/protocol.md §3) and raises ``Unreadable`` for everything else:

- only tags 115, 100, 109, 97, 98, 110, 111, 99, 107, 108, 104, 105, 106;
- BERT-JS reads a multi-byte integer as negative when its first byte is above
  128, so an INTEGER_EXT starting with 0x80 would come out positive: refused;
- the same reader takes 2-byte lengths (atoms, strings) with a first byte of
  0x81 or more as negative, i.e. lengths >= 0x8100 are misread: refused (and
  4-byte counts with a first byte above 128, for the same reason);
- every number becomes a JS double, so an integer beyond 2**53 is refused;
- lists must end with nil.

Input is the list of UTF-16 code units the page's string holds.  Output is
the value "as the page sees it": atoms as ``Atom``, ``{bert, true}`` /
``{bert, false}`` / ``{bert, nil}`` as ``True`` / ``False`` / ``[]``, strings
as ``JsString`` (a str of code units, surrogates unpaired), binaries as
``JsBinary``, tuples as tuples, lists as lists, numbers as int/float.
"""

from __future__ import annotations

import math
import re
from typing import Any

from bullet_py.codec import Atom

READABLE_TAGS = frozenset({115, 100, 109, 97, 98, 110, 111, 99, 107, 108, 104, 105, 106})
_FLOAT = re.compile(r"-?[0-9](?:\.[0-9]+)?e[+-][0-9]{2,3}")


class Unreadable(Exception):
    """BERT-JS 2016 would fail on, or misread, this input."""


class JsString(str):
    """A JS string: one Python char per UTF-16 code unit."""

    def __repr__(self) -> str:
        return f"JsString({str.__repr__(self)})"


class JsBinary(str):
    """A ``Bert.binary`` value: its ``.value`` string, one char per code unit."""

    def __repr__(self) -> str:
        return f"JsBinary({str.__repr__(self)})"


def units_of(text: str) -> list[int]:
    """The UTF-16 code units a JS string built from ``text`` holds."""
    data = text.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]


def js_string(text: str) -> JsString:
    """``text`` as the page's JS string (a surrogate pair is two chars)."""
    return JsString("".join(map(chr, units_of(text))))


class _Reader:
    def __init__(self, units: list[int]) -> None:
        self.u = units
        self.pos = 0

    def take(self, k: int) -> list[int]:
        end = self.pos + k
        if end > len(self.u):
            raise Unreadable(f"input ends inside a field at {self.pos}")
        out = self.u[self.pos : end]
        self.pos = end
        return out

    def byte(self) -> int:
        (b,) = self.take(1)
        if b > 255:
            raise Unreadable(f"unit {b:#x} in a byte position at {self.pos - 1}")
        return b

    def unsigned(self, width: int) -> int:
        bs = [self.byte() for _ in range(width)]
        if width > 1 and bs[0] > 128:
            raise Unreadable(f"{width}-byte field {bs} is read as negative by BERT-JS")
        return int.from_bytes(bytes(bs), "big")

    def term(self, depth: int) -> Any:
        if depth > 1000:
            raise Unreadable("too deep for this test reader")
        tag = self.byte()
        if tag not in READABLE_TAGS:
            raise Unreadable(f"tag {tag} is not readable by BERT-JS")
        if tag == 97:
            return self.byte()
        if tag == 98:
            bs = bytes(self.byte() for _ in range(4))
            if bs[0] == 0x80:
                raise Unreadable("INTEGER_EXT with first byte 0x80 is misread as positive")
            return int.from_bytes(bs, "big", signed=True)
        if tag in (110, 111):
            k = self.byte() if tag == 110 else self.unsigned(4)
            sign = self.byte()
            if sign > 1:
                raise Unreadable("bignum sign")
            value = int.from_bytes(bytes(self.byte() for _ in range(k)), "little")
            if value > 2**53:
                raise Unreadable("integer beyond 2**53 is rounded by JS")
            return -value if sign else value
        if tag == 99:
            raw = self.take(31)
            if any(c > 127 for c in raw):
                raise Unreadable("non-ASCII float text")
            text = bytes(raw).split(b"\x00", 1)[0].decode("ascii")
            if bytes(raw)[len(text) :].strip(b"\x00"):
                raise Unreadable("float text not NUL padded")
            if not _FLOAT.fullmatch(text):
                raise Unreadable(f"float text {text!r} is not what BERT-JS 2016 writes")
            value = float(text)
            if not math.isfinite(value):
                raise Unreadable("non-finite float")
            return value
        if tag in (100, 115):
            k = self.byte() if tag == 115 else self.unsigned(2)
            if k > 255:
                raise Unreadable("atom longer than 255")
            return Atom("".join(map(chr, self.take(k))))
        if tag == 107:
            k = self.unsigned(2)
            return JsString("".join(map(chr, self.take(k))))
        if tag == 109:
            k = self.unsigned(4)
            return JsBinary("".join(map(chr, self.take(k))))
        if tag == 106:
            return []
        if tag == 108:
            k = self.unsigned(4)
            items = [self.term(depth + 1) for _ in range(k)]
            if self.byte() != 106:
                raise Unreadable("list does not end with nil")
            return items
        # 104, 105
        k = self.byte() if tag == 104 else self.unsigned(4)
        items = [self.term(depth + 1) for _ in range(k)]
        if len(items) == 2 and type(items[0]) is Atom and items[0] == "bert":
            second = items[1]
            if type(second) is Atom and second in ("true", "false"):
                return second == "true"
            if type(second) is Atom and second == "nil":
                return []
        return tuple(items)


def read(units: list[int]) -> Any:
    """Read one message as BERT-JS 2016 would, or raise :class:`Unreadable`."""
    r = _Reader(units)
    if r.byte() != 131:
        raise Unreadable("not a BERT message")
    value = r.term(0)
    if r.pos != len(units):
        raise Unreadable("trailing data")
    return value


def read_text(text: str) -> Any:
    """Read ``text`` (what the server sends) as the page's string."""
    return read(units_of(text))


def js_view(value: Any) -> Any:
    """What a 2016 page should see for the Python ``value`` the server encoded."""
    if value is True or value is False:
        return value
    if value is None:
        return Atom("null")
    if isinstance(value, Atom):
        return Atom(js_string(str(value)))
    if isinstance(value, str):
        return js_string(value)
    if isinstance(value, bytes | bytearray):
        return JsBinary(bytes(value).decode("latin-1"))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, tuple):
        items = [js_view(x) for x in value]
        # (Atom("bert"), Atom("true")) is written as {bert, true}: the page
        # reads it as true, like the reader above.
        if len(items) == 2 and type(items[0]) is Atom and items[0] == "bert":
            second = items[1]
            if type(second) is Atom and second in ("true", "false"):
                return second == "true"
            if type(second) is Atom and second == "nil":
                return []
        return tuple(items)
    if isinstance(value, list):
        return [js_view(x) for x in value]
    if isinstance(value, dict):
        return [(Atom(js_string(k)), js_view(x)) for k, x in value.items()]
    raise TypeError(type(value).__name__)
