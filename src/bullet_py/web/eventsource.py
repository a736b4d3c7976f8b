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
from ..logs import log_event, reject, session_hash
from . import view
from .exchange import Exchange, Services
from .liveness import answered, proxied
from .resume import begin_counting, park, plan_stream

_WRITE_ERRORS = (ConnectionError, RuntimeError)


async def serve(endpoint: Services, exchange: Exchange) -> web.StreamResponse:
    opts = endpoint.options
    request = exchange.request
    plan = await plan_stream(endpoint, exchange)
    if plan.view is not None:  # a parked session, served from the shared store
        return await view.serve_eventsource(endpoint, exchange, plan.view, resumed=plan.resumed)
    conn = plan.conn
    if conn is None:
        await endpoint.hub.store.register(plan.session_id)  # known everywhere before its cookie
    response = web.StreamResponse(status=200, headers=sse.HEADERS)
    response.headers.update(endpoint.cors_headers(request))
    if conn is None or exchange.tab is not None:  # a tab's cookie is renewed by each stream
        endpoint.set_cookie(exchange, response, plan.session_id)
    if conn is not None:
        conn.attach(Transport.EVENTSOURCE)  # before the first await: nobody else takes it
    try:
        try:
            await response.prepare(request)
        except _WRITE_ERRORS:
            # The client left (or half-closed: aiohttp then closes) before the stream began.
            log_event(logging.DEBUG, "eventsource_gone", session=session_hash(plan.session_id))
            return response
        fresh = conn is None
        if conn is None:
            conn = endpoint.create_connection(exchange, session_id=plan.session_id)
            begin_counting(conn, exchange, endpoint)
            conn.attach(Transport.EVENTSOURCE)
        conn.holder = _StreamProbe(conn, request, response)
        if exchange.seen is not None:
            first = sse.RESUMED_EVENT if plan.resumed else sse.FRESH_EVENT
            if not await _write(request, response, first, opts.write_timeout, conn.session_id):
                return response
        if fresh:
            await conn.open()
        await _stream(
            conn, request, response, opts.stream_lifetime, opts.stream_keepalive, opts.write_timeout
        )
        if not conn.closed:
            await _end(request, response, opts.write_timeout, conn.session_id)
    finally:
        if conn is not None:
            conn.detach()
            if conn.closed:
                await conn.finish()
            else:
                park(endpoint, conn)  # with a shared store, any worker may resume it now
    return response


class _StreamProbe:
    """An event stream as a holder: alive if its peer acknowledges a keepalive at once.

    An event stream carries nothing from the client, so the sign of life is
    the TCP acknowledgement of a comment written now (see web/liveness.py).
    """

    __slots__ = ("conn", "request", "response")

    def __init__(
        self, conn: Connection, request: web.Request, response: web.StreamResponse
    ) -> None:
        self.conn = conn
        self.request = request
        self.response = response

    def gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def alive(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.response.write(sse.KEEPALIVE)
        except (TimeoutError, *_WRITE_ERRORS):
            return False
        request = self.request
        return await answered(request.transport, None, timeout, count_ack=not proxied(request))

    def drop(self) -> None:
        log_event(logging.INFO, "eventsource_dead_peer", session=session_hash(self.conn.session_id))
        transport = self.request.transport
        if transport is not None:
            transport.abort()


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
        outbox = conn.outbox
        # core.take counts what is sent for a counting client's replay; without
        # one, the outbox's own take is all it would do.
        take = outbox.take if conn.core.replay is None else conn.core.take
        while outbox:
            # Every event queued goes out in one write (up to _UNTIMED_MAX_BYTES):
            # a burst of pushes costs one system call, not one per event.
            sent: list[str] = []
            events: list[bytes] = []
            size = 0
            while (message := outbox.peek()) is not None:
                if not sse.can_carry(message):
                    if message:
                        break  # refused below, once what precedes it is written
                    conn.outbox.take()  # an empty message cannot travel on an event stream
                    continue
                event = sse.frame(message)
                if events and size + len(event) > _UNTIMED_MAX_BYTES:
                    break
                take()
                sent.append(message)
                events.append(event)
                size += len(event)
            if events and not await _write(
                request, response, b"".join(events), write_timeout, conn.session_id
            ):
                for message in reversed(sent):
                    conn.requeue(message)
                return
            if events:
                conn.recorder.message_out("eventsource", len(events))
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
