"""Long polling: ``GET`` takes one message (or 204), ``POST`` brings one message.

A polling client is one session across requests, known by a cookie. The first
``GET`` without a live cookie is answered at once with 204 and the cookie, so
the original client opens immediately; the session (and its handler) only
comes to life when the cookie comes back.

With a session store (several processes, docs/cluster.md) the pending id is
issued in the store, so the cookie may come back to any process: the one it
reaches first claims it and becomes the session's home, where the handler
runs. A ``GET`` landing on any process takes from the session's queue in the
store; a ``POST`` landing elsewhere than the home is forwarded to it and
answered with the home's reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import StreamReader, web

from ..backends.base import Located, Placement, SessionStore
from ..connection import Connection
from ..core.negotiate import Transport
from ..core.text import TEXT_CONTENT_TYPE, exceeds, max_utf8_bytes, xhr_body
from ..exceptions import BackendError, ProtocolError, SessionNotFound
from ..logs import first_time, log_event, session_hash
from ..registry import new_session_id
from .answer import DirectAnswer, direct_allowed
from .exchange import Exchange, Services, client_address
from .parkedpoll import park, parkable
from .resume import take_over

_WRITE_ERRORS = (ConnectionError, RuntimeError)
_MEDIA_TYPE, _CHARSET = TEXT_CONTENT_TYPE.split("; charset=")  # a POST's answer is this text


class _Elsewhere:
    """A session whose handler runs in another process; the store reaches it."""

    __slots__ = ("home", "queued", "session_id", "store")

    def __init__(self, store: SessionStore, session_id: str, located: Located) -> None:
        self.store = store
        self.session_id = session_id
        self.home = located.home
        self.queued = located.queued

    async def handle_message(self, message: str) -> str | None:
        return await self.store.forward(self.home, self.session_id, message)


def _unavailable(transport: Transport, during: str) -> ProtocolError:
    """503: the shared store cannot be reached; the original client retries."""
    log_event(logging.WARNING, "backend_unavailable", during=during, transport=transport.value)
    return ProtocolError("backend unavailable", 503, headers={"Retry-After": "1"})


async def _live_session(endpoint: Services, exchange: Exchange) -> Connection | _Elsewhere | None:
    """The session the request's cookie names, waking a pending one; None if neither.

    Raises:
        ProtocolError: 503 when the store cannot be reached or no session may start.
    """
    session_id = exchange.session_id
    conn = endpoint.registry.get(session_id)
    if conn is not None and not conn.closed:
        return conn
    if not session_id:
        return None
    store = endpoint.hub.store
    try:
        located = await store.locate(session_id)
    except BackendError:
        raise _unavailable(exchange.transport, "locate") from None
    if located.placement is Placement.ELSEWHERE:
        return _Elsewhere(store, session_id, located)
    if located.placement is Placement.TAKEN:
        return await take_over(endpoint, exchange, located)  # its home died: it runs here now
    if located.placement is Placement.CLAIMED:
        try:
            endpoint.check_capacity(exchange.transport, client_address(exchange))
        except ProtocolError:
            store.forget(session_id)
            raise
        conn = endpoint.create_connection(exchange, session_id=session_id)
        if exchange.seen is not None:
            opts = endpoint.options
            conn.core.count_from(0, opts.replay_max_messages, opts.replay_max_chars)
        await conn.open()
        return conn
    if located.placement is Placement.HERE:
        conn = endpoint.registry.get(session_id)
        if conn is not None and not conn.closed:
            return conn
    if first_time(f"session_unknown {session_hash(session_id)}"):
        log_event(  # once per id: a client that keeps a stale cookie does not flood the log
            logging.INFO,
            "session_unknown",
            transport=exchange.transport.value,
            session=session_hash(session_id),
        )
    return None


async def serve_poll(endpoint: Services, exchange: Exchange) -> web.StreamResponse:
    found = await _live_session(endpoint, exchange)
    if isinstance(found, _Elsewhere) and not found.queued:
        found = None  # an event stream's session: its queue is not in the store
    if isinstance(found, Connection) and not found.core.poll_allowed():
        found = None  # another tab's live stream: never take its messages
    if (
        exchange.seen is not None
        and isinstance(found, Connection)
        and not _counted(endpoint, exchange, found)
    ):
        found = None  # it missed more than the session still keeps: a fresh one, and it is told
    store = endpoint.hub.store
    if found is None:
        endpoint.limit_minting(exchange)
        first = web.Response(status=204)
        session_id = new_session_id()
        try:
            await store.issue(session_id)
        except BackendError:
            raise _unavailable(Transport.POLL, "issue_pending") from None
        endpoint.set_cookie(exchange, first, session_id)
        if exchange.seen is not None:
            first.headers[SESSION_HEADER] = "fresh"  # a counting client starts again from 0
        return first
    if isinstance(found, _Elsewhere):
        return await _poll(endpoint, exchange, store, found.session_id, None)
    found.serve_polls()
    if found.store_queue:  # the queue is in the shared store
        return await _poll(endpoint, exchange, store, found.session_id, found)
    # The session's own queue. A message already there is the answer at once:
    # no wait, so no timer and no take (the path of a client with a backlog).
    conn = found
    message = conn.core.take_for_xhr()
    if message is None:
        manager = parkable(endpoint, exchange)
        if manager is not None:  # it waits off aiohttp (web/parkedpoll.py)
            parked = park(endpoint, exchange, conn, manager)
            if parked is not None:
                return parked
        return await _poll(endpoint, exchange, endpoint.hub.local_store, conn.session_id, conn)
    conn.touch()
    response, _ = await _answer_poll(
        endpoint, exchange, conn.session_id, message, lambda: conn.requeue(message)
    )
    return response


SESSION_HEADER = "X-Bullet-Session"
"""On a poll's answer to a counting client: ``fresh`` when its count starts again from 0."""


def _counted(endpoint: Services, exchange: Exchange, conn: Connection) -> bool:
    """A counting client's poll reports what it received: resend what it missed.

    False when that is no longer all kept: the session is closed, and the
    poll gets a fresh one (a gap the client is told of, never a silent one).
    """
    seen = exchange.seen
    if seen is None or conn.store_queue:
        return True
    opts = endpoint.options
    if conn.core.count_from(seen, opts.replay_max_messages, opts.replay_max_chars):
        return True
    log_event(logging.INFO, "session_reset", session=session_hash(conn.session_id))
    conn.close()
    return False


async def _answer_poll(
    endpoint: Services,
    exchange: Exchange,
    session_id: str,
    message: str,
    put_back: Callable[[], None],
) -> tuple[web.StreamResponse, bool]:
    """Write one message as a poll's answer; False (after ``put_back``) if the client left."""
    request = exchange.request
    body = xhr_body(message)
    response: web.StreamResponse
    direct = (
        exchange.tab is None  # a tab's answers renew its cookie
        and endpoint.options.allowed_origins is None
        and direct_allowed(request)
    )
    if direct:
        response = DirectAnswer(body).as_response()  # the same bytes, sooner
    else:
        response = web.StreamResponse(status=200, headers={"Content-Type": TEXT_CONTENT_TYPE})
        response.headers.update(endpoint.cors_headers(request))
        response.content_length = len(body)
        _renew_tab_cookie(endpoint, exchange, response, session_id)
    try:
        await response.prepare(request)  # a direct answer is written whole by this
        if not direct:
            await response.write(body)
            await response.write_eof()
    except _WRITE_ERRORS:
        put_back()  # the client left before the answer was written
        log_event(logging.INFO, "poll_requeued", session=session_hash(session_id))
        return response, False
    except asyncio.CancelledError:
        put_back()
        raise
    endpoint.hub.recorder.message_out("poll")
    return response, True


def _renew_tab_cookie(
    endpoint: Services, exchange: Exchange, response: web.StreamResponse, sid: str
) -> None:
    """A tab's cookie expires unless used: every answer to its polls renews it."""
    if exchange.tab is not None:
        endpoint.set_cookie(exchange, response, sid)


async def _poll(
    endpoint: Services,
    exchange: Exchange,
    queue: SessionStore,
    session_id: str,
    conn: Connection | None,
) -> web.StreamResponse:
    """Wait for the session's next message in ``queue`` and answer with it (204 if none).

    ``conn`` is the session if its home is this process (its activity counts).
    The message stays the queue's until the answer is written: a write that
    fails puts it back at the head.
    """
    peer = exchange.request.transport

    def alive() -> bool:
        return peer is not None and not peer.is_closing()

    loop = asyncio.get_running_loop()
    deadline = loop.time() + endpoint.options.poll_timeout
    while True:
        if conn is not None:
            conn.touch()
        try:
            taken = await queue.take(session_id, max(0.0, deadline - loop.time()), alive)
        finally:
            if conn is not None:
                conn.touch()
        if taken is None:
            empty = web.Response(status=204)
            _renew_tab_cookie(endpoint, exchange, empty, session_id)
            return empty
        if taken.message:
            break
        queue.ack(taken)  # an empty message cannot travel by XHR
        log_event(logging.DEBUG, "empty_message_dropped", transport="poll")
    response, written = await _answer_poll(
        endpoint, exchange, session_id, taken.message, lambda: queue.requeue(taken)
    )
    if written:
        queue.ack(taken)
    return response


async def serve_send(endpoint: Services, exchange: Exchange) -> web.StreamResponse:
    opts = endpoint.options
    request = exchange.request
    _check_rate(endpoint, exchange)
    encoding = request.headers.get("Content-Encoding")
    if encoding is not None and encoding.strip().lower() != "identity":
        raise _refused(415, "bad_body", "content_encoding")
    limit = max_utf8_bytes(opts.max_message_size)
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _refused(413, "too_big", "content_length", length=declared)
    content = request.content
    if content.is_eof():
        # The whole body came with the headers (as a small POST's does): it is
        # all buffered, so take it without a timer or an iterator.
        body = content.read_nowait()
        size = len(body)
        if size > limit:
            raise _refused(413, "too_big", "body", length=size)
    else:
        body = await _read_body(content, limit, opts.body_timeout)
        size = len(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(
            "body is not UTF-8",
            400,
            event="bad_body",
            reason="bad_encoding",
            text="body is not UTF-8",
            length=size,
        ) from None
    if exceeds(text, opts.max_message_size):
        raise ProtocolError("", 413, event="too_big", reason="message_size", length=len(text))
    if not text:
        return web.Response(status=204)  # an empty message cannot travel by POST
    endpoint.hub.recorder.message_in("send")
    live = endpoint.registry.get(exchange.session_id)  # the common case, without a coroutine
    found = (
        live if live is not None and not live.closed else await _live_session(endpoint, exchange)
    )
    if isinstance(found, _Elsewhere):
        try:
            return _send_reply(endpoint, request, await found.handle_message(text))
        except SessionNotFound:
            found = None  # it ended meanwhile: as if the cookie named nobody
        except TimeoutError:
            # The home has the message (or will, once the store is back); a
            # reply it makes is pushed to the session instead, so none is lost.
            log_event(logging.WARNING, "forward_timeout", session=session_hash(found.session_id))
            return web.Response(status=202)
        except BackendError:
            raise _unavailable(Transport.SEND, "forward") from None
    if found is None:
        # No session: like the original server, a handler for this one message.
        endpoint.limit_minting(exchange)
        conn = endpoint.create_connection(exchange, register=False)
        await conn.open()
        reply = await conn.handle_message(text)
        await conn.finish()
    else:
        reply = await found.handle_message(text)
    return _send_reply(endpoint, request, reply)


async def _read_body(content: StreamReader, limit: int, timeout: float) -> bytes:
    """The body as it arrives: at most ``limit`` bytes, within ``timeout`` seconds."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise _refused(413, "too_big", "body", length=size)
                chunks.append(chunk)
    except TimeoutError:
        raise _refused(408, "slow_body", "body_timeout", length=size) from None
    return b"".join(chunks)


def _refused(status: int, event: str, reason: str, *, length: int = 0) -> ProtocolError:
    """A POST refused before its body is read whole: the connection closes after the answer."""
    return ProtocolError(
        "", status, event=event, reason=reason, length=length, close_connection=True
    )


def _check_rate(endpoint: Services, exchange: Exchange) -> None:
    """Refuse (429) a POST over its session's or its address's rate."""
    per_session, per_address = endpoint.post_limits
    if per_session is None and per_address is None:
        return
    now = asyncio.get_running_loop().time()
    session_id = exchange.session_id
    which = None
    if per_session is not None and session_id and not per_session.allow(session_id, now):
        which = "session"
    elif per_address is not None and not per_address.allow(client_address(exchange), now):
        which = "address"
    if which is not None:
        raise ProtocolError(
            "",
            429,
            event="rate_limited",
            reason=which,
            headers={"Retry-After": "1"},
            close_connection=True,
            session_id=session_id,
        )


def _send_reply(endpoint: Services, request: web.Request, reply: str | None) -> web.StreamResponse:
    if not reply:
        return web.Response(status=204)
    endpoint.hub.recorder.message_out("send")
    if endpoint.options.allowed_origins is None and direct_allowed(request):
        return DirectAnswer(xhr_body(reply)).as_response()  # the same bytes, sooner
    # Content type and charset as arguments: aiohttp's quickest way to the same header.
    return web.Response(body=xhr_body(reply), content_type=_MEDIA_TYPE, charset=_CHARSET)
