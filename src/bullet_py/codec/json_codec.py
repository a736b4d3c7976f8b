"""A JSON codec for the Stream layer, for pages that do not load BERT-JS.

JSON has neither tuples nor atoms, so the mapping is fixed and simple:

=================  ==========================  ===============================
JSON               decodes to                  encoded from
=================  ==========================  ===============================
array              ``tuple`` (every array)     ``tuple``, ``list``
object             ``dict`` (last key wins)    ``dict`` with ``str`` keys
string             ``str``                     ``str``, ``Atom``
number             ``int`` / ``float``         ``int`` (|n| <= 2**53), finite ``float``
true/false/null    ``True``/``False``/``None`` same
=================  ==========================  ===============================

Arrays become tuples because Stream messages are tuple-shaped: the page sends
``["sync", ["update", "character", {...}]]`` and the router gets
``("sync", ("update", "character", {...}))``, the same shape as
``{sync, {update, character, Props}}`` from a BERT page (with ``str`` where BERT
has atoms; ``Atom`` is a ``str`` subclass, so comparisons by name work for
both).  Handlers that want a list call ``list()``.  ``proplist_to_dict`` accepts
the ``dict`` a JSON object decodes to, so a handler can treat both alike.

``bytes`` are refused on encode (JSON has no binary type; send text instead).
"""

from __future__ import annotations

import json
import math
from typing import Any

from bullet_py.codec.bert_format import DEFAULT_LIMITS, JS_SAFE_INTEGER, DecodeLimits
from bullet_py.exceptions import DecodeError, EncodeError

__all__ = ["JsonCodec"]


def _fix_text(s: str) -> str:
    # json.loads turns "\\ud83d" (a lone surrogate escape) into a lone
    # surrogate, which cannot be sent back as UTF-8: make it U+FFFD, as a
    # browser would.  Escaped pairs are already combined by json.
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return s


def _reject_constant(name: str) -> Any:
    raise DecodeError("bad_number", name)


class JsonCodec:
    """JSON text <-> Python values, with the same limits as the BERT codec."""

    __slots__ = ("limits", "max_int_digits", "name")

    def __init__(self, *, limits: DecodeLimits = DEFAULT_LIMITS) -> None:
        self.name: str = "json"
        self.limits = limits
        # Digits of the largest integer allowed, matching max_bignum_bytes
        # (int() of a long digit string is quadratic).
        self.max_int_digits = limits.max_bignum_bytes * 241 // 100 + 1

    def _parse_int(self, text: str) -> int:
        if len(text) > self.max_int_digits:
            raise DecodeError("bignum_too_large", f"{len(text)} digits")
        return int(text)

    @staticmethod
    def _parse_float(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise DecodeError("bad_number", "non-finite number")
        return value

    def decode(self, text: str) -> Any:
        """Decode one JSON message.

        Raises:
            DecodeError: ``empty``, ``too_large``, ``bad_json``, ``bad_number``,
                ``bignum_too_large``, ``too_deep``, ``too_many_elements``.
        """
        if not isinstance(text, str):
            raise TypeError(f"decode() takes str, not {type(text).__name__}")
        limits = self.limits
        if len(text) > limits.max_length:
            raise DecodeError("too_large", f"over {limits.max_length} chars")
        if not text.strip():
            raise DecodeError("empty", "empty message")
        try:
            raw = json.loads(
                text,
                parse_int=self._parse_int,
                parse_float=self._parse_float,
                parse_constant=_reject_constant,
            )
        except RecursionError as exc:  # json's C scanner guards its own recursion
            raise DecodeError("too_deep", f"nesting deeper than {limits.max_depth}") from exc
        except DecodeError:
            raise
        except ValueError as exc:
            raise DecodeError("bad_json", str(exc)[:120]) from exc
        budget = [limits.max_elements]
        return self._convert(raw, 0, budget)

    def _convert(self, v: Any, depth: int, budget: list[int]) -> Any:
        # Recursion is bounded by max_depth (checked before descending).
        t = type(v)
        if t is str:
            return _fix_text(v)
        if t is list or t is dict:
            if depth >= self.limits.max_depth:
                raise DecodeError("too_deep", f"nesting deeper than {self.limits.max_depth}")
            budget[0] -= len(v)
            if budget[0] < 0:
                raise DecodeError("too_many_elements", f"more than {self.limits.max_elements}")
            depth += 1
            if t is list:
                return tuple([self._convert(x, depth, budget) for x in v])
            return {_fix_text(k): self._convert(x, depth, budget) for k, x in v.items()}
        return v

    def encode(self, value: Any) -> str:
        """Encode ``value`` as compact JSON text.

        Raises:
            EncodeError: ``unsupported_type``, ``bad_float``, ``int_out_of_range``,
                ``bad_key``, ``too_deep``.
        """
        return json.dumps(
            self._prepare(value, 0), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )

    def _prepare(self, v: Any, depth: int) -> Any:
        if v is None or v is True or v is False:
            return v
        if isinstance(v, str):
            return _fix_text(str(v))
        if isinstance(v, int):
            if -JS_SAFE_INTEGER <= v <= JS_SAFE_INTEGER:
                return int(v)
            raise EncodeError("int_out_of_range", "integer beyond what the page can read")
        if isinstance(v, float):
            if not math.isfinite(v):
                raise EncodeError("bad_float", repr(v))
            return float(v)
        if isinstance(v, list | tuple | dict):
            if depth >= self.limits.max_depth:
                raise EncodeError("too_deep", f"nesting deeper than {self.limits.max_depth}")
            depth += 1
            if isinstance(v, dict):
                out: dict[str, Any] = {}
                for key, x in v.items():
                    if not isinstance(key, str):
                        raise EncodeError("bad_key", f"dict key is not a str: {type(key).__name__}")
                    out[_fix_text(str(key))] = self._prepare(x, depth)
                return out
            return [self._prepare(x, depth) for x in v]
        raise EncodeError("unsupported_type", type(v).__name__)

    def __repr__(self) -> str:
        return "JsonCodec()"
