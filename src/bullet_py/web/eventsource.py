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

from aiohttp import web

from ..connection import Connection
from ..core import sse
from ..core.negotiate import Transport
from ..core.session import REFUSAL_STATUS, StreamDecision
from ..exceptions import ProtocolError
from ..logs import log_event, reject, session_hash
from .exchange import Exchange, Services, client_address

_WRITE_ERRORS = (ConnectionError, RuntimeError)


async def serve(endpoint: Services, exchange: Exchange) -> web.StreamResponse:
    opts = endpoint.options
    request = exchange.request
    conn = endpoint.registry.get(exchange.session_id)
    decision = StreamDecision.FRESH if conn is None else conn.stream_request(Transport.EVENTSOURCE)
    if decision is StreamDecision.REFUSE:
        assert conn is not None
        log_event(logging.INFO, "eventsource_refused", session=session_hash(conn.session_id))
        raise ProtocolError("event stream refused: poll instead", REFUSAL_STATUS)
    fresh = decision is StreamDecision.FRESH
    if fresh:
        endpoint.limit_minting(exchange)
        endpoint.check_capacity(Transport.EVENTSOURCE, client_address(exchange))
        conn = endpoint.create_connection(exchange)
    assert conn is not None
    response = web.StreamResponse(status=200, headers=sse.HEADERS)
    response.headers.update(endpoint.cors_headers(request))
    if fresh or exchange.tab is not None:  # a tab's cookie is renewed by each stream
        endpoint.set_cookie(exchange, response, conn.session_id)
    conn.attach(Transport.EVENTSOURCE)
    try:
        try:
            await response.prepare(request)
        except _WRITE_ERRORS:
            # The client left (or half-closed: aiohttp then closes) before the stream began.
            log_event(logging.DEBUG, "eventsource_gone", session=session_hash(conn.session_id))
            if fresh:
                conn.close()
            return response
        if fresh:
            await conn.open()
        await _stream(
            conn, request, response, opts.stream_lifetime, opts.stream_keepalive, opts.write_timeout
        )
        if not conn.closed:
            await _end(request, response, opts.write_timeout, conn.session_id)
    finally:
        conn.detach()
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
            if not await _write(request, response, sse.KEEPALIVE, write_timeout, conn.session_id):
                return
            continue
        while conn.outbox:
            # Every event queued goes out in one write (up to _UNTIMED_MAX_BYTES):
            # a burst of pushes costs one system call, not one per event.
            sent: list[str] = []
            events: list[bytes] = []
            size = 0
            while (message := conn.outbox.peek()) is not None:
                if not sse.can_carry(message):
                    if message:
                        break  # refused below, once what precedes it is written
                    conn.take()  # an empty message cannot travel on an event stream
                    continue
                event = sse.frame(message)
                if events and size + len(event) > _UNTIMED_MAX_BYTES:
                    break
                conn.take()
                sent.append(message)
                events.append(event)
                size += len(event)
            if events and not await _write(
                request, response, b"".join(events), write_timeout, conn.session_id
            ):
                for message in reversed(sent):
                    conn.requeue(message)
                return
            message = conn.outbox.peek()
            if message and not sse.can_carry(message):
                conn.refuse_streams()
                log_event(
                    logging.INFO,
                    "eventsource_to_polling",
                    session=session_hash(conn.session_id),
                )
                return


# aiohttp makes a write wait only while the transport is paused, which takes
# more than its high-water mark (64 KiB) buffered: a chunk this small written
# while nothing is buffered cannot pause it, so it goes without a timer (a
# timer per event costs more than the write).
_UNTIMED_MAX_BYTES = 60_000


async def _write(
    request: web.Request, response: web.StreamResponse, data: bytes, timeout: float, sid: str
) -> bool:
    try:
        transport = request.transport
        if (
            transport is not None
            and len(data) <= _UNTIMED_MAX_BYTES
            and not transport.get_write_buffer_size()
        ):
            await response.write(data)
        else:
            async with asyncio.timeout(timeout):
                await response.write(data)
    except TimeoutError:
        _stalled(request, sid)
        return False
    except _WRITE_ERRORS:
        return False
    return True


async def _end(
    request: web.Request, response: web.StreamResponse, timeout: float, sid: str
) -> None:
    try:
        async with asyncio.timeout(timeout):
            await response.write_eof()
    except TimeoutError:
        _stalled(request, sid)
    except _WRITE_ERRORS:
        pass


def _stalled(request: web.Request, sid: str) -> None:
    """The client stopped reading: drop the connection and what is buffered for it.

    A graceful close waits for the buffer to drain, which never happens here,
    so the socket and its buffer would stay until the kernel gave up.
    """
    reject("slow_consumer", "write_timeout", transport="eventsource", session_id=sid)
    transport = request.transport
    if transport is not None:
        transport.abort()
