"""Long polling: ``GET`` takes one message (or 204), ``POST`` brings one message.

A polling client is one session across requests, known by a cookie. The first
``GET`` without a live cookie is answered at once with 204 and the cookie, so
the original client opens immediately; the session (and its handler) only
comes to life when the cookie comes back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from ..core.negotiate import Transport
from ..core.text import TEXT_CONTENT_TYPE, exceeds, max_utf8_bytes, xhr_body
from ..logs import log_event, reject, session_hash

if TYPE_CHECKING:
    from ..connection import Connection
    from .endpoint import BulletEndpoint

_WRITE_ERRORS = (ConnectionError, RuntimeError)


async def _live_session(
    endpoint: BulletEndpoint, request: web.Request, transport: Transport
) -> Connection | web.Response | None:
    """The session the request's cookie names, waking a pending one; None if neither."""
    session_id = endpoint.session_cookie(request)
    conn = endpoint.registry.get(session_id)
    if conn is not None and not conn.closed:
        return conn
    if endpoint.registry.claim_pending(session_id):
        refused = endpoint.refuse_new_session(transport)
        if refused is not None:
            return refused
        conn = endpoint.create_connection(transport, request, session_id=session_id)
        await conn.open()
        return conn
    if session_id:
        log_event(
            logging.INFO,
            "session_unknown",
            transport=transport.value,
            session=session_hash(session_id),
        )
    return None


async def serve_poll(endpoint: BulletEndpoint, request: web.Request) -> web.StreamResponse:
    found = await _live_session(endpoint, request, Transport.POLL)
    if isinstance(found, web.Response):
        return found
    if found is None:
        first = web.Response(status=204)
        endpoint.set_cookie(request, first, endpoint.registry.issue_pending())
        return first
    conn = found
    if not conn.attached:
        conn.transport = Transport.POLL
    peer = request.transport

    def alive() -> bool:
        return peer is not None and not peer.is_closing()

    message = await conn.poll(endpoint.options.poll_timeout, alive)
    if message is None:
        return web.Response(status=204)
    body = xhr_body(message)
    response = web.StreamResponse(status=200, headers={"Content-Type": TEXT_CONTENT_TYPE})
    response.headers.update(endpoint.cors_headers(request))
    response.content_length = len(body)
    try:
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
    except _WRITE_ERRORS:
        conn.requeue(message)  # the client left before the answer was written
        log_event(logging.INFO, "poll_requeued", session=session_hash(conn.session_id))
    except asyncio.CancelledError:
        conn.requeue(message)
        raise
    return response


async def serve_send(endpoint: BulletEndpoint, request: web.Request) -> web.StreamResponse:
    opts = endpoint.options
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        reject("bad_body", "content_encoding", transport="post")
        return web.Response(status=415)
    limit = max_utf8_bytes(opts.max_message_size)
    declared = request.content_length
    if declared is not None and declared > limit:
        reject("too_big", "content_length", transport="post", length=declared)
        return web.Response(status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            reject("too_big", "body", transport="post", length=size)
            return web.Response(status=413, headers={"Connection": "close"})
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        reject("bad_body", "bad_encoding", transport="post", length=size)
        return web.Response(status=400, text="body is not UTF-8")
    if exceeds(text, opts.max_message_size):
        reject("too_big", "message_size", transport="post", length=len(text))
        return web.Response(status=413)
    if not text:
        return web.Response(status=204)  # an empty message cannot travel by POST
    found = await _live_session(endpoint, request, Transport.SEND)
    if isinstance(found, web.Response):
        return found
    if found is None:
        # No session: like the original server, a handler for this one message.
        conn = endpoint.create_connection(Transport.SEND, request, register=False)
        await conn.open()
        reply = await conn.handle_message(text)
        await conn.finish()
    else:
        reply = await found.handle_message(text)
    if not reply:
        return web.Response(status=204)
    return web.Response(
        status=200, body=xhr_body(reply), headers={"Content-Type": TEXT_CONTENT_TYPE}
    )
