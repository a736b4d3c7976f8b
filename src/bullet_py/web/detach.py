"""Taking a socket from aiohttp's connection handler without closing it.

An idle WebSocket (web/wspeer.py) and a parked long-poll (web/parkedpoll.py)
wait on their socket for a long time and speak nothing aiohttp must parse
meanwhile, yet aiohttp would keep its connection handler, parser, two tasks
and their coroutines for each (most of a connection's memory). So the
transport gets a protocol of bullet_py's (``transport.set_protocol``) and
aiohttp's handler is told the connection is lost while its transport is
unset: it forgets the connection (its server's count, its keep-alive timer)
and its request loop ends with the request's task, without touching the
socket. ``tests/web/test_wspeer.py`` and ``tests/web/test_parked_poll.py``
pin this against the installed aiohttp (pyproject.toml bounds its range).
"""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import web


def release(inner: asyncio.BaseProtocol, transport: asyncio.Transport) -> None:
    """Have aiohttp's handler ``inner`` let go of ``transport``; call it from the request's task.

    The transport is put back on the handler once the request's task is done
    (cancelled or not: with ``handler_cancellation`` it is), so
    ``request.transport`` keeps answering for applications, and the
    handler, whose loop is over by then, never closes it.
    """
    inner.transport = None  # type: ignore[attr-defined]
    inner.connection_lost(None)
    task = asyncio.current_task()
    if task is not None:
        task.add_done_callback(_RestoreTransport(inner, transport))


class _RestoreTransport:
    """Puts the socket's transport back on aiohttp's handler once the request's task is done."""

    __slots__ = ("inner", "transport")

    def __init__(self, inner: asyncio.BaseProtocol, transport: asyncio.Transport) -> None:
        self.inner = inner
        self.transport = transport

    def __call__(self, _: object) -> None:
        self.inner.transport = self.transport  # type: ignore[attr-defined]


class _Detached:
    """What a handler that took its socket returns to aiohttp: nothing to write, no next request.

    aiohttp's handler calls ``prepare`` and ``write_eof`` and reads
    ``keep_alive`` (its connection is already gone: see :func:`release`);
    with no access log (the callers check) nothing else is read.
    """

    __slots__ = ()

    status = 200
    reason = "OK"
    keep_alive = False
    prepared = True
    body_length = 0

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


#: The response of a request whose socket left aiohttp (web/parkedpoll.py, web/postlane.py).
DETACHED = cast(web.StreamResponse, _Detached())
