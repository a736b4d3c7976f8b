"""Commands packed by hiredis, for redis-py's asyncio connections.

redis-py's synchronous client packs a command into the Redis protocol with
``hiredis.pack_command`` when hiredis is installed; its asyncio client always
packs in Python, argument by argument. Every push, take and acknowledgement of
this backend is a script call of 5 to 20 arguments, and packing a push's took
13 µs, 4.8 µs with hiredis (``bench/redis_pack.py``; docs/benchmarks.md, "The event
loop and the direct answer", item 5).

The subclass made here changes nothing else: each ``str`` is encoded with the
connection's own encoding and error rule (``surrogatepass``: a lone surrogate
goes to Redis and back unchanged), ``int`` and ``bytes`` go as they are (hiredis
writes an int in decimal, as redis-py does), anything else through redis-py's
encoder (a float as its ``repr``, a bool refused), and a command name with a
space is split, as redis-py does. Without hiredis the connection class is left
as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # the redis extra installs hiredis; without it, redis-py packs
    _hiredis_pack = None

_made: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def hiredis_packing(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """``base`` (what redis-py picked for the URL: TCP, TLS, Unix socket) packing with hiredis."""
    if _hiredis_pack is None:
        return base
    pack: Callable[[tuple[Any, ...]], bytes] = _hiredis_pack
    made = _made.get(base)
    if made is not None:
        return made

    class Packed(base):  # type: ignore[valid-type,misc]
        def pack_command(self, *args: Any) -> list[bytes]:
            first = args[0]
            if isinstance(first, str):
                args = (*first.encode().split(), *args[1:])
            elif b" " in first:
                args = (*first.split(), *args[1:])
            encoder = self.encoder
            encoding, errors = encoder.encoding, encoder.encoding_errors
            packed = []
            for arg in args:
                kind = type(arg)
                if kind is str:
                    packed.append(arg.encode(encoding, errors))
                elif kind is bytes or kind is int:
                    packed.append(arg)
                else:  # redis-py's rules, its errors included; hiredis takes bytes only
                    packed.append(bytes(encoder.encode(arg)))
            try:
                return [pack(tuple(packed))]
            except TypeError as exc:
                raise DataError(str(exc)) from exc

    Packed.__name__ = Packed.__qualname__ = f"HiredisPacked{base.__name__}"
    _made[base] = Packed
    return Packed
