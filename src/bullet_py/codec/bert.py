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
and maps the atom ``none`` to ``None``.  The decoder here is iterative, checks
every declared length against the remaining input *before* allocating, and only
ever raises :class:`~bullet_py.exceptions.DecodeError`.  erlastic still provides
the :class:`Atom` type and is the benchmark baseline (``bench/codec.py``).

Decoding is linear in the input: bignums are capped (``max_bignum_bytes``),
containers are checked against the remaining input and a global element budget,
nesting is bounded by ``max_depth`` with an explicit stack (no recursion).

The encoder only emits tags BERT-JS can read and reproduces BERT-JS 2016 output
byte for byte for every vector in ``tests/vectors``.  See ``docs/codec.md`` for
the full mapping.

This module is the codec's face: :class:`BertCodec` and everything a caller
imports.  The work lives in one module per job: :mod:`.bert_decode`,
:mod:`.bert_encode`, and :mod:`.bert_format` for what both agree on.
"""

from __future__ import annotations

from typing import Any

from bullet_py.codec.bert_decode import decode, decode_bytes
from bullet_py.codec.bert_encode import encode, encode_bytes, make_encoder
from bullet_py.codec.bert_format import DEFAULT_LIMITS, JS_SAFE_INTEGER, Booleans, DecodeLimits

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
        self._encode = make_encoder(
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
