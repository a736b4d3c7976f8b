"""Codecs between the text a page sends and Python values.

A codec turns one message (``str``, as the transports deliver it) into a Python
value and back.  The Stream layer uses BERT, as BERT-JS pages speak it
(:mod:`bullet_py.codec.bert`); :mod:`bullet_py.codec.json_codec` serves pages
without BERT-JS.  Nothing here imports asyncio or aiohttp.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from bullet_py.codec.bert import (
    DEFAULT_LIMITS,
    JS_SAFE_INTEGER,
    BertCodec,
    Booleans,
    DecodeLimits,
    decode,
    decode_bytes,
    encode,
    encode_bytes,
)
from bullet_py.codec.json_codec import JsonCodec
from bullet_py.codec.terms import Atom, atom, dict_to_proplist, proplist_to_dict

__all__ = [
    "DEFAULT_LIMITS",
    "JS_SAFE_INTEGER",
    "Atom",
    "BertCodec",
    "Booleans",
    "Codec",
    "DecodeLimits",
    "JsonCodec",
    "atom",
    "decode",
    "decode_bytes",
    "dict_to_proplist",
    "encode",
    "encode_bytes",
    "get_codec",
    "proplist_to_dict",
]


@runtime_checkable
class Codec(Protocol):
    """What the transports and the router need from a codec.

    ``decode`` raises :class:`~bullet_py.exceptions.DecodeError` (a peer fault)
    and ``encode`` raises :class:`~bullet_py.exceptions.EncodeError` (a reply
    the page could not read), each with a machine-readable ``reason``.
    """

    name: str

    def decode(self, text: str) -> Any:
        """Turn one received message into a Python value."""
        ...

    def encode(self, value: Any) -> str:
        """Turn a Python value into one message to send."""
        ...


def get_codec(name: str) -> Codec:
    """Return a codec by name: ``"bert"`` (BERT-JS 2016 pages), ``"bert2012"``, ``"json"``.

    Raises:
        ValueError: an unknown name (a configuration error).
    """
    if name == "bert":
        return BertCodec()
    if name == "bert2012":
        return BertCodec(booleans="2012")
    if name == "json":
        return JsonCodec()
    raise ValueError(f"unknown codec {name!r}: expected 'bert', 'bert2012' or 'json'")
