"""The event-stream transport (``GET`` with ``Accept: text/event-stream``).

The session is kept by cookie across streams: the original server ends each
stream after 60 s and the client opens a new one, and what was pushed in
between waits in the session's queue instead of being lost.

A message holding CR cannot travel here unaltered. When one reaches the head
of the queue, the stream ends with the message still queued and the session
marked; the client's next event-stream request is refused (406) before it
opens, so the original client falls back to long polling, whose first GET
(same cookie) receives the message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from ..connection import Connection
from ..core import sse
from ..core.negotiate import Transport
from ..logs import log_event, session_hash

if TYPE_CHECKING:
    from .endpoint import BulletEndpoint

_WRITE_ERRORS = (ConnectionError, RuntimeError)


async def serve(endpoint: BulletEndpoint, request: web.Request) -> web.StreamResponse:
    opts = endpoint.options
    conn = endpoint.registry.get(endpoint.session_cookie(request))
    if conn is not None and conn.eventsource_refused and not conn.closed:
        log_event(logging.INFO, "eventsource_refused", session=session_hash(conn.session_id))
        return web.Response(status=406)
    # Resume only a detached event-stream session; a polling tab's cookie, or a
    # session another stream holds, gets a session of its own.
    fresh = (
        conn is None or conn.attached or conn.closed or conn.transport is not Transport.EVENTSOURCE
    )
    if fresh:
        refused = endpoint.refuse_new_session(Transport.EVENTSOURCE)
        if refused is not None:
            return refused
        conn = endpoint.create_connection(Transport.EVENTSOURCE, request)
    assert conn is not None
    response = web.StreamResponse(status=200, headers=sse.HEADERS)
    response.headers.update(endpoint.cors_headers(request))
    if fresh:
        endpoint.set_cookie(request, response, conn.session_id)
    conn.attached = True
    conn.transport = Transport.EVENTSOURCE
    try:
        await response.prepare(request)
        if fresh:
            await conn.open()
        await _stream(
            conn, request, response, opts.stream_lifetime, opts.stream_keepalive, opts.write_timeout
        )
        if not conn.closed:
            await _end(response, opts.write_timeout)
    finally:
        conn.attached = False
        conn.touch()
        if conn.closed:
            await conn.finish()
    return response


async def _stream(
    conn: Connection,
    request: web.Request,
    response: web.StreamResponse,
    lifetime: float | None,
    keepalive: float,
    write_timeout: float,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = None if lifetime is None else loop.time() + lifetime
    while not conn.closed:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        wait = keepalive if deadline is None else min(keepalive, deadline - loop.time())
        if wait <= 0:
            return
        if not await conn.wait_outgoing(wait):
            if not await _write(response, sse.KEEPALIVE, write_timeout):
                return
            continue
        while (message := conn.outbox.peek()) is not None:
            if not sse.can_carry(message):
                if message:
                    conn.eventsource_refused = True
                    log_event(
                        logging.INFO,
                        "eventsource_to_polling",
                        session=session_hash(conn.session_id),
                    )
                    return
                conn.take()  # an empty message cannot travel on an event stream
                continue
            conn.take()
            if not await _write(response, sse.frame(message), write_timeout):
                conn.requeue(message)
                return


async def _write(response: web.StreamResponse, data: bytes, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            await response.write(data)
    except (TimeoutError, *_WRITE_ERRORS):
        return False
    return True


async def _end(response: web.StreamResponse, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await response.write_eof()
    except (TimeoutError, *_WRITE_ERRORS):
        pass
