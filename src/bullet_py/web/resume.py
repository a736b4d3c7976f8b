"""Which session a WebSocket or event-stream request gets: the one its cookie names, or a new one.

The rules are the session core's (``SessionCore.stream_request``); this adds
what needs waiting: asking a holding stream whether it is still alive, and
waiting for a dead one to let go, before the handshake is answered (the
answer's cookie names the session the connection ends up with).
"""

from __future__ import annotations

import logging

from ..backends.base import Located, Placement, SessionStore
from ..config import Options
from ..connection import Connection
from ..core.negotiate import Transport
from ..core.session import REFUSAL_STATUS, StreamDecision
from ..exceptions import BackendError, ProtocolError
from ..logs import log_event, session_hash
from ..registry import new_session_id
from .exchange import Exchange, Services, client_address


class View:
    """A parked session served from the shared store's queue (docs/sessions.md).

    ``conn`` is the session when this process is its home (its handler runs
    here); otherwise what the client sends is forwarded to ``home``.
    """

    __slots__ = ("conn", "home", "session_id", "store")

    def __init__(
        self, store: SessionStore, session_id: str, *, conn: Connection | None, home: str = ""
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.conn = conn
        self.home = home

    async def handle_message(self, message: str) -> str | None:
        """The handler's reply, wherever it runs.

        Raises (for a session elsewhere): see :meth:`SessionStore.forward`.
        """
        if self.conn is not None:
            return await self.conn.handle_message(message)
        return await self.store.forward(self.home, self.session_id, message)


class StreamPlan:
    """The outcome: resume ``conn``, start a session named ``session_id`` once connected,
    or serve ``view``, a parked session."""

    __slots__ = ("conn", "reset", "session_id", "view")

    def __init__(
        self,
        conn: Connection | None,
        session_id: str,
        *,
        reset: bool = False,
        view: View | None = None,
    ) -> None:
        self.conn = conn  # None: a fresh session, made once the handshake succeeded
        self.session_id = session_id
        # A counting client asked to resume and cannot (a fresh session, or a
        # session taken over from a home that died holding its stream): tell it.
        self.reset = reset
        self.view = view

    @property
    def resumed(self) -> bool:
        """The client goes on counting where it was (False: it is told to start again)."""
        return (self.conn is not None or self.view is not None) and not self.reset


async def plan_stream(endpoint: Services, exchange: Exchange) -> StreamPlan:
    """Resume the cookie's session if the rules allow, else plan a fresh one.

    Raises:
        ProtocolError: 406 for an event stream the session refuses (CR queued),
            503 when a fresh session would exceed the session table.
    """
    opts = endpoint.options
    transport = exchange.transport
    conn = endpoint.registry.get(exchange.session_id)
    if endpoint.hub.store.holds_queues and exchange.session_id and opts.resumes(transport.value):
        if conn is None or (conn.parked and not conn.closed):
            planned = await _plan_shared(endpoint, exchange, conn)
            if planned is not None:
                return planned
            if conn is not None:  # parked, and the store cannot be asked now
                return _fresh(endpoint, exchange, reset=bool(exchange.seen))
    decision = StreamDecision.FRESH
    if conn is not None and (
        opts.resumes(transport.value)
        # Bullet's own rule, whatever the option: an event-stream session
        # outlives each stream (the server ends them every 60 s).
        or (transport is Transport.EVENTSOURCE and conn.transport is Transport.EVENTSOURCE)
    ):
        decision = conn.stream_request(transport)
        if decision is StreamDecision.PROBE:
            if await conn.take_over(opts.resume_probe_timeout):
                log_event(logging.INFO, "session_taken_over", session=session_hash(conn.session_id))
                decision = conn.stream_request(transport)
            else:
                decision = StreamDecision.FRESH  # alive: another tab's
    if decision is StreamDecision.REFUSE:
        assert conn is not None
        log_event(logging.INFO, "eventsource_refused", session=session_hash(conn.session_id))
        raise ProtocolError("event stream refused: poll instead", REFUSAL_STATUS)
    reset = False
    if decision is StreamDecision.RESUME:
        assert conn is not None
        seen = exchange.seen
        if seen is None or conn.core.count_from(
            seen, opts.replay_max_messages, opts.replay_max_chars
        ):
            conn.recorder.resumed(transport.value)
            return StreamPlan(conn, conn.session_id)
        # What the client missed is no longer all kept: a fresh session, and
        # the client is told so, rather than a silent hole.
        log_event(logging.INFO, "session_reset", session=session_hash(conn.session_id))
        conn.close()
        reset = True
    elif exchange.seen:
        reset = True  # it counted messages of a session that is gone
    return _fresh(endpoint, exchange, reset=reset)


def _fresh(endpoint: Services, exchange: Exchange, *, reset: bool) -> StreamPlan:
    endpoint.limit_minting(exchange)
    endpoint.check_capacity(exchange.transport, client_address(exchange))
    return StreamPlan(None, new_session_id(), reset=reset)


def begin_counting(conn: Connection, exchange: Exchange, endpoint: Services) -> None:
    """A fresh session for a client that counts: its replay buffer starts at 0."""
    if exchange.seen is not None:
        opts = endpoint.options
        conn.core.count_from(0, opts.replay_max_messages, opts.replay_max_chars)


# --- several processes: parked sessions (docs/sessions.md, "Several workers") ------------

#: How long a stream request waits for a session held by a stream on another
#: worker to be parked there, beyond ``resume_probe_timeout``: that worker
#: notices an event stream's end within its sweeper's second.
_PARK_WAIT_EXTRA = 1.0


async def _plan_shared(
    endpoint: Services, exchange: Exchange, conn: Connection | None
) -> StreamPlan | None:
    """A stream request for a session this process does not hold in memory (or holds
    parked): a view of it, a takeover, or None (the in-process rules decide)."""
    store = endpoint.hub.store
    session_id = exchange.session_id
    assert session_id
    opts = endpoint.options
    try:
        located = await store.locate(session_id)
        if located.placement is Placement.ELSEWHERE and not located.parked and not located.queued:
            # A stream holds it on its home, or its end is being noticed there.
            located = await store.wait_parked(
                session_id, opts.resume_probe_timeout + _PARK_WAIT_EXTRA
            )
    except BackendError:
        return None
    placement = located.placement
    if placement is Placement.CLAIMED:
        store.forget(session_id)  # a polling client's pending id: not for a stream
        return None
    if placement is Placement.TAKEN:
        conn = await take_over(endpoint, exchange, located)
        view = View(store, session_id, conn=conn)
    elif placement is Placement.ELSEWHERE and located.parked:
        view = View(store, session_id, conn=None, home=located.home)
    elif placement is Placement.HERE and conn is not None:
        decision = conn.stream_request(exchange.transport)
        if decision is StreamDecision.PROBE and await conn.take_over(opts.resume_probe_timeout):
            decision = conn.stream_request(exchange.transport)
        if decision is not StreamDecision.RESUME and decision is not StreamDecision.REFUSE:
            return _fresh(endpoint, exchange, reset=bool(exchange.seen))
        view = View(store, session_id, conn=conn)
    else:
        return None
    if exchange.transport is Transport.EVENTSOURCE and located.cr:
        log_event(logging.INFO, "eventsource_refused", session=session_hash(session_id))
        raise ProtocolError("event stream refused: poll instead", REFUSAL_STATUS)
    if exchange.seen is not None and located.gap:
        # Its home died with the stream attached: what was in flight, or queued
        # in that process, is gone. The session goes on (pushes made since are
        # in its queue); the client is told its count starts again, never a
        # silent hole.
        try:
            await store.rewind(session_id, 0)
        except BackendError:
            pass  # a count that cannot start again here starts with the first message
        log_event(logging.INFO, "session_reset", session=session_hash(session_id), kept="1")
        return StreamPlan(None, session_id, view=view, reset=True)
    if exchange.seen is not None:
        try:
            counted = await store.rewind(session_id, exchange.seen)
        except BackendError:
            counted = False
        if not counted:
            log_event(logging.INFO, "session_reset", session=session_hash(session_id))
            if view.conn is not None:
                view.conn.close()
            return _fresh(endpoint, exchange, reset=True)
    endpoint.hub.recorder.resumed(exchange.transport.value)
    return StreamPlan(None, session_id, view=view)


async def take_over(endpoint: Services, exchange: Exchange, located: Located) -> Connection:
    """This process now runs a parked session whose home died: a fresh handler, told so.

    The queue stays in the store; pushes made while nobody ran the session are
    applied first (``catch_up``), then ``on_resume`` runs.
    """
    store = endpoint.hub.store
    session_id = exchange.session_id
    assert session_id
    conn = endpoint.create_connection(exchange, session_id=session_id, register=False)
    conn.share(store, queue_in_store=True)
    conn.parked = True
    store.adopt(session_id, queued=True)
    await store.catch_up(
        session_id, located.entry, lambda: endpoint.registry.add(conn), applied_by=located.home
    )
    log_event(logging.INFO, "session_taken_over", session=session_hash(session_id), remote="1")
    await conn.resume()
    return conn


def resumes(opts: Options, conn: Connection) -> bool:
    """The session may outlive its connection (a session a POST woke is a polling one)."""
    transport = conn.transport
    if transport is Transport.SEND:
        transport = Transport.POLL
    return opts.resumes(transport.value)


def park(endpoint: Services, conn: Connection) -> bool:
    """Move a session whose stream dropped into the shared store; False if it stays here.

    From then on its queue (and a counting client's count and last messages)
    is in the store: any process serves it, and a process that finds its home
    dead takes it over. Only with a store that holds queues (Redis).
    """
    store = endpoint.hub.store
    if not store.holds_queues or conn.parked or conn.closed or not resumes(endpoint.options, conn):
        return False
    core = conn.core
    queue: list[str] | None = None
    if not conn.store_queue:
        queue = list(core.outbox)
        core.outbox.clear()
    replay = core.replay
    store.park(
        conn.session_id,
        queue,
        None if replay is None else replay.sent,
        [] if replay is None else replay.kept(),
    )
    conn.share(store, queue_in_store=True)
    conn.parked = True
    log_event(logging.INFO, "session_parked", session=session_hash(conn.session_id))
    return True
