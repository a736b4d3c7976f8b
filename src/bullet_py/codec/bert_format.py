"""What the BERT encoder and decoder agree on: format constants and decode limits.

Kept apart so :mod:`~bullet_py.codec.bert_decode` and
:mod:`~bullet_py.codec.bert_encode` share one definition of each bound without
importing each other.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DEFAULT_LIMITS",
    "INT27_MAX",
    "INT27_MIN",
    "JS_SAFE_INTEGER",
    "MAX_ATOM_UNITS",
    "MAX_STRING_UNITS",
    "UTF16",
    "VERSION",
    "Booleans",
    "DecodeLimits",
]

#: How booleans and ``[]`` are written: BERT-JS 2016 tuples or 2012 atoms.
Booleans = Literal["2016", "2012"]

#: BERT-JS turns every integer into a JS number; beyond this magnitude the page
#: would silently get a rounded value, so the encoder refuses it by default.
JS_SAFE_INTEGER: Final = 2**53

#: The first byte of every message.
VERSION: Final = 131
#: BERT-JS reads a 2-byte length with its first byte >= 0x81 as negative.
MAX_STRING_UNITS: Final = 0x8100
MAX_ATOM_UNITS: Final = 255
#: The range BERT-JS writes as INTEGER_EXT; outside it the encoder writes a bignum.
INT27_MIN: Final = -(2**27)
INT27_MAX: Final = 2**27 - 1

#: UTF-16 in native order, so a ``memoryview`` cast to "H" reads code units.
UTF16: Final = "utf-16-le" if sys.byteorder == "little" else "utf-16-be"


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
    max_elements: int = 10_000
    max_bignum_bytes: int = 64

    def __post_init__(self) -> None:
        for name in ("max_length", "max_depth", "max_elements", "max_bignum_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"DecodeLimits.{name} must be a positive int, got {value!r}")


DEFAULT_LIMITS: Final = DecodeLimits()
