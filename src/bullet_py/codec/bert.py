"""BERT (Erlang external term format) as BERT-JS writes and reads it, on *text*.

A BERT-JS page hands ``send()`` a "binary string": a JS string with one UTF-16
code unit per byte position.  The server receives it as text (a WebSocket text
frame, or a UTF-8 body), so this codec works on Python ``str``:

- positions are UTF-16 code units: an astral character (one Python code point,
  e.g. "😀") is two positions, because the page's string held a surrogate pair;
- structural positions (version, tags, lengths, integer bytes) must be <= 255,
  else ``bad_term``;
- inside string, atom and binary payloads BERT-JS copies any JS char unchanged,
  so units above 255 appear there; they are read back as the text the user
  typed (surrogate pairs recombined, a lone surrogate becomes U+FFFD).

Why not erlastic for this: erlastic works on bytes 0-255 only, has no limits
(compressed bombs, quadratic bignums, RecursionError at depth 1000), raises
KeyError on unknown tags, silently accepts truncated payloads and trailing bytes,
and maps the atom ``none`` to ``None``.  The decoder below is iterative, checks
every declared length against the remaining input *before* allocating, and only
ever raises :class:`~bullet_py.exceptions.DecodeError`.  erlastic still provides
the :class:`Atom` type and is the benchmark baseline (``bench/codec.py``).

Decoding is linear in the input: bignums are capped (``max_bignum_bytes``),
containers are checked against the remaining input and a global element budget,
nesting is bounded by ``max_depth`` with an explicit stack (no recursion).

The encoder only emits tags BERT-JS can read (100, 109, 97, 98, 110, 99, 107,
108, 104, 105, 106) and reproduces BERT-JS 2016 output byte for byte for every
vector in ``tests/vectors``.  See ``docs/codec.md`` for the full mapping.
"""

from __future__ import annotations

import math
import re
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import lru_cache
from typing import Any, Final, Literal, Protocol

from bullet_py.codec.terms import Atom
from bullet_py.exceptions import DecodeError, EncodeError

__all__ = [
    "DEFAULT_LIMITS",
    "JS_SAFE_INTEGER",
    "BertCodec",
    "Booleans",
    "DecodeLimits",
    "decode",
    "decode_bytes",
    "encode",
    "encode_bytes",
]

Booleans = Literal["2016", "2012"]

#: BERT-JS turns every integer into a JS number; beyond this magnitude the page
#: would silently get a rounded value, so the encoder refuses it by default.
JS_SAFE_INTEGER: Final = 2**53

_VERSION: Final = 131
#: BERT-JS reads a 2-byte length with its first byte >= 0x81 as negative.
_MAX_STRING_UNITS: Final = 0x8100
_MAX_ATOM_UNITS: Final = 255
_INT27_MIN: Final = -(2**27)
_INT27_MAX: Final = 2**27 - 1

# Units above 255 are replaced by this in the structural view of a wide
# message: any length or integer built from one is far out of range, and every
# single-unit read checks ``> 255``, so such a unit can never pass as a byte.
_WIDE: Final = 1 << 40

_UTF16: Final = "utf-16-le" if sys.byteorder == "little" else "utf-16-be"


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds applied to every decoded message (hostile input is the default case).

    Attributes:
        max_length: input size in UTF-16 code units (the unit BERT-JS counts).
        max_depth: container nesting (tuples and lists) allowed.
        max_elements: total elements declared by all containers of one message.
        max_bignum_bytes: digits of a big integer (64 bytes = 512 bits).
    """

    max_length: int = 1 << 20
    max_depth: int = 100
    max_elements: int = 100_000
    max_bignum_bytes: int = 64

    def __post_init__(self) -> None:
        for name in ("max_length", "max_depth", "max_elements", "max_bignum_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"DecodeLimits.{name} must be a positive int, got {value!r}")


DEFAULT_LIMITS: Final = DecodeLimits()


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


class _Slicer(Protocol):
    def __getitem__(self, key: slice, /) -> Any: ...


_MISS: Final[Any] = object()

# Decoded atoms by name.  Pre-filled with the names that decode to Python
# constants and with the atoms the Stream layer compares by identity; other
# atoms are added up to a bound (a page cannot grow it without limit).
_ATOM_CACHE_MAX: Final = 2048
_BERT: Final = Atom("bert")
_NIL: Final = Atom("nil")
_ATOMS: dict[str, Any] = {"true": True, "false": False, "null": None, "bert": _BERT, "nil": _NIL}
for _name in ("sync", "ok", "error", "create", "read", "update", "patch", "delete", "none"):
    _ATOMS[_name] = Atom(_name)
del _name

# What C's "%e" and JS's toExponential print, and nothing else: no blanks, no
# underscores, no hex, no nan/inf words (Python's float() takes all of those).
_FLOAT_TEXT: Final = re.compile(rb"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NONZERO_TO_ONE: Final = bytes([0]) + bytes([1]) * 255
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_F64: Final = struct.Struct(">d")


def _new_atom(name: str) -> Atom:
    a = Atom(name)
    if len(_ATOMS) < _ATOM_CACHE_MAX:
        _ATOMS[name] = a
    return a


class _WideText:
    """Payload text of a message holding units > 255: UTF-16 slices, recombined."""

    __slots__ = ("_b16",)

    def __init__(self, b16: bytes) -> None:
        self._b16 = b16

    def __getitem__(self, key: slice, /) -> str:
        return self._b16[2 * key.start : 2 * key.stop].decode(_UTF16, "replace")


class _WideBinary:
    """Binary payloads of a wide message: ``bytes`` if every unit <= 255, else text.

    ``Bert.binary("Łukasz")`` puts JS chars > 255 in a binary; that is text the
    user typed, not bytes, so it is returned as ``str`` rather than mangled.
    """

    __slots__ = ("_text", "_units")

    def __init__(self, units: list[int], text: _Slicer) -> None:
        self._units = units
        self._text = text

    def __getitem__(self, key: slice, /) -> bytes | str:
        try:
            return bytes(self._units[key])
        except ValueError:
            text: str = self._text[key]
            return text


def _length_error(declared: int, pos: int, field_max: int) -> DecodeError:
    if declared > field_max:  # a unit > 255 inside the length field
        return DecodeError("bad_term", f"non-byte unit in length at {pos}")
    return DecodeError("length_exceeds_input", f"length {declared} at {pos}")


def _truncated(pos: int) -> DecodeError:
    return DecodeError("truncated", f"input ends at {pos}")


def _bad_unit(pos: int) -> DecodeError:
    return DecodeError("bad_term", f"non-byte unit at {pos}")


def _too_deep(limit: int) -> DecodeError:
    return DecodeError("too_deep", f"nesting deeper than {limit}")


def _too_many(limit: int) -> DecodeError:
    return DecodeError("too_many_elements", f"more than {limit} elements")


def _parse_float_text(raw: bytes, pos: int) -> float:
    text, nul, pad = raw.partition(b"\x00")
    if (nul and pad.strip(b"\x00")) or _FLOAT_TEXT.fullmatch(text) is None:
        raise DecodeError("bad_float", f"float text at {pos}")
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError("bad_float", f"non-finite float at {pos}")
    return value


def _decode_units(u: Any, src: _Slicer, bsrc: _Slicer, limits: DecodeLimits) -> Any:
    """Decode one message.

    Args:
        u: the structural view, indexable to ints: ``bytes``, or a list where
            units > 255 are ``_WIDE``.
        src: slices to ``str`` (string and atom payloads), positions as in ``u``.
        bsrc: slices to binary payloads.
        limits: bounds to enforce.
    """
    n = len(u)
    if n == 0:
        raise DecodeError("empty", "empty message")
    if n > limits.max_length:
        raise DecodeError("too_large", f"{n} units, limit {limits.max_length}")
    version = u[0]
    if version != _VERSION:
        if version > 255:
            raise _bad_unit(0)
        raise DecodeError("bad_version", f"version byte {version}")
    try:
        return _decode_body(u, n, src, bsrc, limits)
    except ValueError as exc:  # bytes()/int.from_bytes() met a unit > 255, or bad UTF-8
        raise DecodeError("bad_term", "non-byte unit in a byte field") from exc


def _decode_body(u: Any, n: int, src: _Slicer, bsrc: _Slicer, limits: DecodeLimits) -> Any:
    # One flat loop with an explicit stack, so nesting costs heap, not C stack.
    # Each frame is (items, declared count, is_list).
    # The innermost open container is kept in locals (cur, cur_k, cur_list);
    # the ones around it wait on ``stack``.
    stack: list[tuple[list[Any], int, bool]] = []
    push = stack.append
    cur: list[Any] | None = None
    cur_k = 0
    cur_list = False
    depth = 0
    max_depth = limits.max_depth
    budget = limits.max_elements
    max_big = limits.max_bignum_bytes
    atoms = _ATOMS
    bert_atom = _BERT
    nil_atom = _NIL
    pos = 1
    value: Any
    while True:
        if pos >= n:
            raise _truncated(pos)
        tag = u[pos]
        pos += 1
        if tag == 104:  # SMALL_TUPLE_EXT
            if pos >= n:
                raise _truncated(pos)
            k = u[pos]
            pos += 1
            if k:
                if k > n - pos:
                    raise _length_error(k, pos - 1, 255)
                budget -= k
                if budget < 0:
                    raise _too_many(limits.max_elements)
                if depth >= max_depth:
                    raise _too_deep(max_depth)
                if cur is not None:
                    push((cur, cur_k, cur_list))
                cur = []
                cur_k = k
                cur_list = False
                depth += 1
                continue
            value = ()
        elif tag == 100:  # ATOM_EXT
            end = pos + 2
            if end > n:
                raise _truncated(n)
            k = (u[pos] << 8) | u[pos + 1]
            pos = end
            end += k
            if end > n:
                raise _length_error(k, pos - 2, 0xFFFF)
            if k > _MAX_ATOM_UNITS:
                raise DecodeError("atom_too_long", f"{k} units at {pos - 2}")
            name = src[pos:end]
            pos = end
            value = atoms.get(name, _MISS)
            if value is _MISS:
                value = _new_atom(name)
        elif tag == 97:  # SMALL_INTEGER_EXT
            if pos >= n:
                raise _truncated(pos)
            value = u[pos]
            if value > 255:
                raise _bad_unit(pos)
            pos += 1
        elif tag == 107:  # STRING_EXT
            end = pos + 2
            if end > n:
                raise _truncated(n)
            k = (u[pos] << 8) | u[pos + 1]
            pos = end
            end += k
            if end > n:
                raise _length_error(k, pos - 2, 0xFFFF)
            value = src[pos:end]
            pos = end
        elif tag == 108:  # LIST_EXT
            end = pos + 4
            if end > n:
                raise _truncated(n)
            k = (u[pos] << 24) | (u[pos + 1] << 16) | (u[pos + 2] << 8) | u[pos + 3]
            pos = end
            if k >= n - pos:  # k elements and the tail, at least one unit each
                raise _length_error(k, pos - 4, 0xFFFFFFFF)
            if k:
                budget -= k
                if budget < 0:
                    raise _too_many(limits.max_elements)
                if depth >= max_depth:
                    raise _too_deep(max_depth)
                if cur is not None:
                    push((cur, cur_k, cur_list))
                cur = []
                cur_k = k
                cur_list = True
                depth += 1
                continue
            tail = u[pos]
            if tail != 106:
                raise _bad_unit(pos) if tail > 255 else DecodeError("improper_list", f"at {pos}")
            pos += 1
            value = []
        elif tag == 106:  # NIL_EXT
            value = []
        elif tag == 98:  # INTEGER_EXT
            end = pos + 4
            if end > n:
                raise _truncated(n)
            value = (u[pos] << 24) | (u[pos + 1] << 16) | (u[pos + 2] << 8) | u[pos + 3]
            if value > 0x7FFFFFFF:
                if value > 0xFFFFFFFF:
                    raise _bad_unit(pos)
                value -= 0x100000000
            pos = end
        elif tag == 109:  # BINARY_EXT
            end = pos + 4
            if end > n:
                raise _truncated(n)
            k = (u[pos] << 24) | (u[pos + 1] << 16) | (u[pos + 2] << 8) | u[pos + 3]
            pos = end
            end += k
            if end > n:
                raise _length_error(k, pos - 4, 0xFFFFFFFF)
            value = bsrc[pos:end]
            pos = end
        elif tag == 99:  # FLOAT_EXT: 31 bytes of text, NUL padded
            end = pos + 31
            if end > n:
                raise _truncated(n)
            value = _parse_float_text(bytes(u[pos:end]), pos)
            pos = end
        elif tag == 110 or tag == 111:  # SMALL_BIG_EXT, LARGE_BIG_EXT
            width = 1 if tag == 110 else 4
            end = pos + width + 1
            if end > n:
                raise _truncated(n)
            if width == 1:
                k = u[pos]
            else:
                k = (u[pos] << 24) | (u[pos + 1] << 16) | (u[pos + 2] << 8) | u[pos + 3]
            sign = u[end - 1]
            if k > n - end:
                raise _length_error(k, pos, 255 if width == 1 else 0xFFFFFFFF)
            if k > max_big:
                raise DecodeError("bignum_too_large", f"{k} bytes at {pos}")
            if sign > 1:
                raise _bad_unit(end - 1) if sign > 255 else DecodeError("bad_term", "bignum sign")
            pos = end + k
            value = int.from_bytes(u[end:pos], "little")  # ValueError on a wide unit
            if sign:
                value = -value
        elif tag == 115:  # SMALL_ATOM_EXT
            if pos >= n:
                raise _truncated(pos)
            k = u[pos]
            pos += 1
            end = pos + k
            if end > n:
                raise _length_error(k, pos - 1, 255)
            name = src[pos:end]
            pos = end
            value = atoms.get(name, _MISS)
            if value is _MISS:
                value = _new_atom(name)
        elif tag == 105:  # LARGE_TUPLE_EXT
            end = pos + 4
            if end > n:
                raise _truncated(n)
            k = (u[pos] << 24) | (u[pos + 1] << 16) | (u[pos + 2] << 8) | u[pos + 3]
            pos = end
            if k > n - pos:
                raise _length_error(k, pos - 4, 0xFFFFFFFF)
            if k:
                budget -= k
                if budget < 0:
                    raise _too_many(limits.max_elements)
                if depth >= max_depth:
                    raise _too_deep(max_depth)
                if cur is not None:
                    push((cur, cur_k, cur_list))
                cur = []
                cur_k = k
                cur_list = False
                depth += 1
                continue
            value = ()
        elif tag == 70:  # NEW_FLOAT_EXT
            end = pos + 8
            if end > n:
                raise _truncated(n)
            value = _F64.unpack(bytes(u[pos:end]))[0]
            if not math.isfinite(value):
                raise DecodeError("bad_float", f"non-finite float at {pos}")
            pos = end
        elif tag == 118 or tag == 119:  # ATOM_UTF8_EXT, SMALL_ATOM_UTF8_EXT
            if tag == 118:
                end = pos + 2
                if end > n:
                    raise _truncated(n)
                k = (u[pos] << 8) | u[pos + 1]
                field_max = 0xFFFF
            else:
                end = pos + 1
                if end > n:
                    raise _truncated(n)
                k = u[pos]
                field_max = 255
            if end + k > n:
                raise _length_error(k, pos, field_max)
            pos = end + k
            name = bytes(u[end:pos]).decode("utf-8")  # ValueError -> bad_term
            if len(name) > _MAX_ATOM_UNITS:
                raise DecodeError("atom_too_long", f"{len(name)} chars at {end}")
            value = atoms.get(name, _MISS)
            if value is _MISS:
                value = _new_atom(name)
        else:
            if tag > 255:
                raise _bad_unit(pos - 1)
            # Compressed terms (80) are refused: browsers never send them and
            # inflating is how a 2 KB message becomes 1 GB.  Maps (116), pids,
            # ports, refs and funs have no meaning for a page.
            raise DecodeError(f"unsupported_tag:{tag}", f"at {pos - 1}")

        # Hand the finished value to the enclosing containers, closing every
        # container it completes.
        while cur is not None:
            cur.append(value)
            if len(cur) < cur_k:
                break
            if cur_list:
                if pos >= n:
                    raise _truncated(pos)
                tail = u[pos]
                if tail != 106:
                    if tail > 255:
                        raise _bad_unit(pos)
                    raise DecodeError("improper_list", f"tail at {pos}")
                pos += 1
                value = cur
            elif cur_k == 2 and cur[0] is bert_atom:
                second = cur[1]
                if second is True or second is False:
                    value = second
                elif second is nil_atom:
                    value = []
                else:
                    value = tuple(cur)
            else:
                value = tuple(cur)
            depth -= 1
            if depth:
                cur, cur_k, cur_list = stack.pop()
            else:
                cur = None
        else:
            if pos != n:
                raise DecodeError("trailing_data", f"{n - pos} units after the term")
            return value


def _wide_views(text: str) -> tuple[list[int], _Slicer, _Slicer]:
    """Structural and payload views of a message holding units > 255."""
    b16 = text.encode(_UTF16, "surrogatepass")
    if _UTF16 == "utf-16-le":
        low, high = b16[0::2], b16[1::2]
    else:  # pragma: no cover - big-endian hosts
        low, high = b16[1::2], b16[0::2]
    # Units > 255 have a non-zero high byte.  Few runs of them (a name typed
    # in Polish): mark each run with a slice assignment.  Many runs (hostile
    # or very mixed text): one comprehension, linear whatever the mix.
    mask = high.translate(_NONZERO_TO_ONE)
    end = len(mask)
    runs = mask.count(b"\x00\x01") + (mask[0] == 1)
    units: list[int]
    if runs * 16 <= end:
        units = list(low)
        start = mask.find(1)
        while start >= 0:
            stop = mask.find(0, start)
            if stop < 0:
                stop = end
            units[start:stop] = [_WIDE] * (stop - start)
            start = mask.find(1, stop)
    else:
        units = [c if c < 256 else _WIDE for c in memoryview(b16).cast("H")]
    payload: _Slicer
    if len(units) == len(text) and _SURROGATE.search(text) is None:
        payload = text  # all BMP: one code point per unit, slice the text itself
    else:
        payload = _WideText(b16)
    return units, payload, _WideBinary(units, payload)


def decode(text: str, *, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    """Decode one BERT message received as text from a page.

    Args:
        text: the message as the page sent it (WebSocket text frame, or a body
            decoded from UTF-8).
        limits: bounds; the defaults suit browser traffic.

    Returns:
        The Python value, per the mapping in ``docs/codec.md``.

    Raises:
        DecodeError: with ``reason`` one of ``empty``, ``too_large``,
            ``bad_version``, ``truncated``, ``length_exceeds_input``,
            ``unsupported_tag:N``, ``bad_float``, ``atom_too_long``,
            ``bignum_too_large``, ``too_deep``, ``too_many_elements``,
            ``trailing_data``, ``bad_term``, ``improper_list``.
        TypeError: ``text`` is not a ``str`` (a programming error).
    """
    if type(text) is not str:
        if not isinstance(text, str):
            raise TypeError(f"decode() takes str, not {type(text).__name__}")
        text = str(text)
    if len(text) > limits.max_length:  # code points <= UTF-16 units
        raise DecodeError("too_large", f"over {limits.max_length} units")
    # "ignore" drops chars > 255 without raising (an exception here would cost
    # more than the whole decode of a small message).
    data = text.encode("latin-1", "ignore")
    if len(data) == len(text):
        # Every unit is a byte: positions in ``text`` are positions in ``data``.
        return _decode_units(data, text, data, limits)
    units, wide_text, wide_bin = _wide_views(text)
    return _decode_units(units, wide_text, wide_bin, limits)


def decode_bytes(
    data: bytes | bytearray | memoryview, *, limits: DecodeLimits = DEFAULT_LIMITS
) -> Any:
    """Decode a raw ETF binary (a non-browser client, or a test): bytes 0-255 only.

    Strings decode as Latin-1 text, binaries as ``bytes``; same limits and
    errors as :func:`decode`.
    """
    raw = bytes(data)
    return _decode_units(raw, raw.decode("latin-1"), raw, limits)


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------

_U32: Final = struct.Struct(">I")
_I32: Final = struct.Struct(">i")


def _u32(k: int) -> str:
    return _U32.pack(k).decode("latin-1")


_SMALL_INTS: Final = tuple("a" + chr(i) for i in range(256))
_TUPLE_HEADS: Final = tuple("h" + chr(i) for i in range(256))
_ATOM_TRUE: Final = "d\x00\x04true"
_ATOM_FALSE: Final = "d\x00\x05false"
_ATOM_NULL: Final = "d\x00\x04null"
_ATOM_BERT: Final = "d\x00\x04bert"
_BERT_TRUE: Final = "h\x02" + _ATOM_BERT + _ATOM_TRUE
_BERT_FALSE: Final = "h\x02" + _ATOM_BERT + _ATOM_FALSE
_BERT_NIL: Final = "h\x02" + _ATOM_BERT + "d\x00\x03nil"

_ATOM_PIECES: dict[str, str] = {}
_ATOM_PIECES_MAX: Final = 4096


def _fix_surrogates(s: str) -> str:
    """Pair up surrogates as a JS string would, and replace lone ones by U+FFFD.

    A lone surrogate cannot be sent as UTF-8; the browser would show U+FFFD.
    """
    return s.encode(_UTF16, "surrogatepass").decode(_UTF16, "replace")


def _units_of(s: str) -> tuple[int, str]:
    """UTF-16 length of ``s`` (what BERT-JS's ``.length`` says), and ``s`` made sendable."""
    if s.isascii():
        return len(s), s
    try:
        return len(s.encode(_UTF16)) >> 1, s
    except UnicodeEncodeError:
        s = _fix_surrogates(s)
        return len(s.encode(_UTF16)) >> 1, s


def _atom_piece(name: str) -> str:
    piece = _ATOM_PIECES.get(name)
    if piece is None:
        k, text = _units_of(name)
        if k > _MAX_ATOM_UNITS:
            raise EncodeError("atom_too_long", f"{k} units")
        piece = "d\x00" + chr(k) + text
        if len(_ATOM_PIECES) < _ATOM_PIECES_MAX:
            _ATOM_PIECES[name] = piece
    return piece


def _string_piece(s: str) -> str:
    if s.isascii():
        k = len(s)
    else:
        k, s = _units_of(s)
    if k < _MAX_STRING_UNITS:
        return "k" + chr(k >> 8) + chr(k & 255) + s
    # BERT-JS misreads a 2-byte length >= 0x8100: send long text as a binary.
    return "m" + _u32(k) + s


def _float_piece(x: float) -> str:
    """FLOAT_EXT as BERT-JS 2016 writes it: 21 significant digits, 2+ exponent digits.

    That is C's ``%.20e`` except on exact ties, where JS's ``toExponential``
    rounds the magnitude up and C rounds to even.
    """
    if not math.isfinite(x):
        raise EncodeError("bad_float", repr(x))
    text = f"{x:.20e}"
    longer = f"{x:.21e}"  # a tie needs exactly 22 significant digits, the last a 5
    if longer[longer.index("e") - 1] == "5":
        text = _float_tie(x, text)
    return "c" + text + "\x00" * (31 - len(text))


def _float_tie(x: float, text: str) -> str:
    exact = Decimal(x)
    digits = exact.as_tuple().digits
    if len(digits) != 22 or digits[-1] != 5:
        return text
    with localcontext() as ctx:
        ctx.prec = 21
        ctx.rounding = ROUND_HALF_UP
        rounded = +abs(exact)
    _, rdigits, exponent = rounded.as_tuple()
    mantissa = "".join(map(str, rdigits)).ljust(21, "0")
    exp10 = int(exponent) + len(rdigits) - 1
    out = f"{mantissa[0]}.{mantissa[1:]}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    return ("-" if x < 0 else "") + out


def _bignum_piece(v: int) -> str:
    mag = -v if v < 0 else v
    digits = mag.to_bytes((mag.bit_length() + 7) >> 3, "little")
    if len(digits) > 255:
        raise EncodeError("int_out_of_range", f"{len(digits)} bytes")
    return "n" + chr(len(digits)) + ("\x01" if v < 0 else "\x00") + digits.decode("latin-1")


Encoder = Callable[[Any], str]


@lru_cache(maxsize=16)
def _make_encoder(booleans: Booleans, big_ints: bool, max_depth: int) -> Encoder:
    """Build an encoder for one configuration (its choices are closure constants)."""
    if booleans == "2016":
        true_piece, false_piece, empty_piece = _BERT_TRUE, _BERT_FALSE, _BERT_NIL
    elif booleans == "2012":
        true_piece, false_piece, empty_piece = _ATOM_TRUE, _ATOM_FALSE, "j"
    else:
        raise ValueError(f'booleans must be "2016" or "2012", not {booleans!r}')
    # In the 2016 form, booleans and [] are tuples: one more level of nesting.
    const_is_tuple = booleans == "2016"
    int_limit = 1 << 2040 if big_ints else JS_SAFE_INTEGER
    small_ints = _SMALL_INTS
    tuple_heads = _TUPLE_HEADS
    atom_pieces = _ATOM_PIECES
    pack_i32 = _I32.pack

    def put(v: Any, ap: Callable[[str], None], depth: int) -> None:
        t = type(v)
        if t is tuple:
            k = len(v)
            ap(tuple_heads[k] if k < 256 else "i" + _u32(k))
            if k:
                if depth >= max_depth:
                    raise EncodeError("too_deep", f"nesting deeper than {max_depth}")
                depth += 1
                for x in v:
                    put(x, ap, depth)
        elif t is Atom:
            piece = atom_pieces.get(v)
            ap(piece if piece is not None else _atom_piece(v))
        elif t is str:
            ap(_string_piece(v))
        elif t is int:
            if 0 <= v < 256:
                ap(small_ints[v])
            elif _INT27_MIN <= v <= _INT27_MAX:
                ap("b" + pack_i32(v).decode("latin-1"))
            elif -int_limit <= v <= int_limit:
                ap(_bignum_piece(v))
            else:
                raise EncodeError("int_out_of_range", "integer beyond what the page can read")
        elif t is list:
            if not v:
                if const_is_tuple and depth >= max_depth:
                    raise EncodeError("too_deep", f"nesting deeper than {max_depth}")
                ap(empty_piece)
                return
            if depth >= max_depth:
                raise EncodeError("too_deep", f"nesting deeper than {max_depth}")
            ap("l" + _u32(len(v)))
            depth += 1
            for x in v:
                put(x, ap, depth)
            ap("j")
        elif t is bool:
            if const_is_tuple and depth >= max_depth:
                raise EncodeError("too_deep", f"nesting deeper than {max_depth}")
            ap(true_piece if v else false_piece)
        elif v is None:
            ap(_ATOM_NULL)
        elif t is float:
            ap(_float_piece(v))
        elif t is dict:
            put_dict(v, ap, depth)
        elif t is bytes:
            ap("m" + _u32(len(v)) + v.decode("latin-1"))
        else:
            put_other(v, ap, depth)

    def put_dict(d: Mapping[Any, Any], ap: Callable[[str], None], depth: int) -> None:
        if not d:
            put([], ap, depth)
            return
        if depth + 1 >= max_depth:  # the list, then a {Key, Value} tuple per item
            raise EncodeError("too_deep", f"nesting deeper than {max_depth}")
        ap("l" + _u32(len(d)))
        depth += 2
        for key, x in d.items():
            if not isinstance(key, str):
                raise EncodeError("bad_key", f"dict key is not a str: {type(key).__name__}")
            ap("h\x02")
            ap(_atom_piece(key))
            put(x, ap, depth)
        ap("j")

    def put_other(v: Any, ap: Callable[[str], None], depth: int) -> None:
        # Subclasses of the builtins (IntEnum, namedtuple, str enums...) land here.
        if isinstance(v, Atom):
            ap(_atom_piece(str(v)))
        elif isinstance(v, int):
            put(int(v), ap, depth)
        elif isinstance(v, float):
            put(float(v), ap, depth)
        elif isinstance(v, str):
            put(str(v), ap, depth)
        elif isinstance(v, bytes | bytearray | memoryview):
            put(bytes(v), ap, depth)
        elif isinstance(v, tuple):
            put(tuple(v), ap, depth)
        elif isinstance(v, list):
            put(list(v), ap, depth)
        elif isinstance(v, Mapping):
            put_dict(v, ap, depth)
        else:
            raise EncodeError("unsupported_type", type(v).__name__)

    def encode_value(value: Any) -> str:
        out: list[str] = ["\x83"]
        put(value, out.append, 0)
        return "".join(out)

    return encode_value


def encode(
    value: Any,
    *,
    booleans: Booleans = "2016",
    big_ints: bool = False,
    max_depth: int = DEFAULT_LIMITS.max_depth,
) -> str:
    """Encode ``value`` as the text a BERT-JS page decodes back to the same value.

    Args:
        value: see the mapping in ``docs/codec.md``.
        booleans: ``"2016"`` writes ``True``/``False``/``[]`` as ``{bert, true}``,
            ``{bert, false}``, ``{bert, nil}`` like BERT-JS 2016; ``"2012"`` writes
            the atoms ``true``/``false`` and nil, for pages on the 2012 line.
        big_ints: allow integers beyond +-2**53 (as small bignums, up to 255
            bytes).  Off by default: a JS page would round them silently.
        max_depth: container nesting allowed (cycles end here too).

    Returns:
        One ``str`` with one char per code unit; a surrogate pair is emitted as
        the astral char itself, so it goes out as one 4-byte UTF-8 sequence.

    Raises:
        EncodeError: ``unsupported_type``, ``bad_float`` (NaN, +-inf),
            ``int_out_of_range``, ``atom_too_long``, ``bad_key``, ``too_deep``.
    """
    return _make_encoder(booleans, big_ints, max_depth)(value)


def encode_bytes(
    value: Any,
    *,
    booleans: Booleans = "2016",
    big_ints: bool = False,
    max_depth: int = DEFAULT_LIMITS.max_depth,
) -> bytes:
    """Encode ``value`` as a raw ETF binary (every unit a byte).

    Raises:
        EncodeError: as :func:`encode`, and ``not_latin1`` when the value holds
            text that needs units above 255 (only text frames can carry it).
    """
    text = encode(value, booleans=booleans, big_ints=big_ints, max_depth=max_depth)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise EncodeError("not_latin1", "text above U+00FF needs a text transport") from exc


class BertCodec:
    """The BERT codec for one kind of page, usable wherever a ``Codec`` is expected.

    ``BertCodec()`` suits BERT-JS 2016 pages (and reads both lines);
    ``BertCodec(booleans="2012")`` writes booleans and ``[]`` the 2012 way.
    """

    __slots__ = ("_encode", "booleans", "limits", "name")

    def __init__(
        self,
        *,
        booleans: Booleans = "2016",
        limits: DecodeLimits = DEFAULT_LIMITS,
        big_ints: bool = False,
        max_depth: int | None = None,
    ) -> None:
        self.booleans: Booleans = booleans
        self.limits = limits
        self.name: str = "bert" if booleans == "2016" else "bert2012"
        self._encode = _make_encoder(
            booleans, big_ints, limits.max_depth if max_depth is None else max_depth
        )

    def decode(self, text: str) -> Any:
        """Decode a page's message (see :func:`decode`)."""
        return decode(text, limits=self.limits)

    def encode(self, value: Any) -> str:
        """Encode a reply for the page (see :func:`encode`)."""
        return self._encode(value)

    def __repr__(self) -> str:
        return f"BertCodec(booleans={self.booleans!r})"
