"""The BERT encoder: Python values to the text a BERT-JS page decodes.

It only emits tags BERT-JS can read (100, 109, 97, 98, 110, 99, 107, 108, 104,
105, 106) and reproduces BERT-JS 2016 output byte for byte for every vector in
``tests/vectors``.  The output is ``str`` with one char per code unit, so it
goes out as a WebSocket text frame or a UTF-8 body; :func:`encode_bytes` gives
the raw ETF binary when every unit is a byte.  See :mod:`bullet_py.codec.bert`
for the mapping rules.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import lru_cache
from typing import Any, Final

from bullet_py.codec.bert_format import (
    DEFAULT_LIMITS,
    INT27_MAX,
    INT27_MIN,
    JS_SAFE_INTEGER,
    MAX_ATOM_UNITS,
    MAX_STRING_UNITS,
    UTF16,
    Booleans,
)
from bullet_py.codec.terms import Atom
from bullet_py.exceptions import EncodeError

__all__ = ["Encoder", "encode", "encode_bytes", "make_encoder"]

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
    return s.encode(UTF16, "surrogatepass").decode(UTF16, "replace")


def _units_of(s: str) -> tuple[int, str]:
    """UTF-16 length of ``s`` (what BERT-JS's ``.length`` says), and ``s`` made sendable."""
    if s.isascii():
        return len(s), s
    try:
        return len(s.encode(UTF16)) >> 1, s
    except UnicodeEncodeError:
        s = _fix_surrogates(s)
        return len(s.encode(UTF16)) >> 1, s


def _atom_piece(name: str) -> str:
    piece = _ATOM_PIECES.get(name)
    if piece is None:
        k, text = _units_of(name)
        if k > MAX_ATOM_UNITS:
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
    if k < MAX_STRING_UNITS:
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
def make_encoder(booleans: Booleans, big_ints: bool, max_depth: int) -> Encoder:
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
            elif INT27_MIN <= v <= INT27_MAX:
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
    return make_encoder(booleans, big_ints, max_depth)(value)


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
