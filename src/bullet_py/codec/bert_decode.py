"""The BERT decoder: one message, as text from a page or as raw ETF bytes.

Both entry points feed one loop (:func:`_decode_units`) with three views of the
message: a structural view indexed to ints (tags, lengths, integer bytes), a
view that slices string and atom payloads to ``str``, and one that slices
binary payloads.  :func:`decode_bytes` and the common case of :func:`decode`
(every unit <= 255) pass the Latin-1 bytes themselves; only text holding units
above 255 pays for the wider views of :func:`_wide_views`.

The loop is iterative, checks every declared length against the remaining
input *before* allocating, and only ever raises
:class:`~bullet_py.exceptions.DecodeError`.  See :mod:`bullet_py.codec.bert`
for the mapping rules.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any, Final, Protocol

from bullet_py.codec.bert_format import DEFAULT_LIMITS, MAX_ATOM_UNITS, UTF16, VERSION, DecodeLimits
from bullet_py.codec.terms import Atom
from bullet_py.exceptions import DecodeError

__all__ = ["decode", "decode_bytes"]

# Units above 255 are replaced by this in the structural view of a wide
# message: any length or integer built from one is far out of range, and every
# single-unit read checks ``> 255``, so such a unit can never pass as a byte.
_WIDE: Final = 1 << 40


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
        return self._b16[2 * key.start : 2 * key.stop].decode(UTF16, "replace")


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
    if version != VERSION:
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
        # The tags come in the order a Stream message uses them most.  Opening a
        # container and looking up an atom are written out in each branch that
        # does them (twice each): a helper would cost a call per term, and one
        # branch for all three tuple/list heads puts two more comparisons before
        # every atom and integer (measured 4-10% slower on Stream messages).
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
            if k > MAX_ATOM_UNITS:
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
        elif tag == 108 or tag == 105:  # LIST_EXT, LARGE_TUPLE_EXT: 4-byte count
            is_list = tag == 108
            end = pos + 4
            if end > n:
                raise _truncated(n)
            k = (u[pos] << 24) | (u[pos + 1] << 16) | (u[pos + 2] << 8) | u[pos + 3]
            pos = end
            if k + is_list > n - pos:  # one unit at least per element, and a list's tail
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
                cur_list = is_list
                depth += 1
                continue
            if is_list:
                tail = u[pos]
                if tail != 106:
                    if tail > 255:
                        raise _bad_unit(pos)
                    raise DecodeError("improper_list", f"at {pos}")
                pos += 1
                value = []
            else:
                value = ()
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
        elif tag == 70:  # NEW_FLOAT_EXT
            end = pos + 8
            if end > n:
                raise _truncated(n)
            value = _F64.unpack(bytes(u[pos:end]))[0]
            if not math.isfinite(value):
                raise DecodeError("bad_float", f"non-finite float at {pos}")
            pos = end
        elif tag == 115 or tag == 118 or tag == 119:
            # SMALL_ATOM_EXT (Latin-1), ATOM_UTF8_EXT, SMALL_ATOM_UTF8_EXT
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
            if tag == 115:
                name = src[end:pos]  # as ATOM_EXT: one char per unit
            else:
                name = bytes(u[end:pos]).decode("utf-8")  # ValueError -> bad_term
                if len(name) > MAX_ATOM_UNITS:
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
    b16 = text.encode(UTF16, "surrogatepass")
    if UTF16 == "utf-16-le":
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
