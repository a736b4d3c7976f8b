"""Which session a WebSocket or event-stream request gets: the one its cookie names, or a new one.

The rules are the session core's (``SessionCore.stream_request``); this adds
what needs waiting: asking a holding stream whether it is still alive, and
waiting for a dead one to let go, before the handshake is answered (the
answer's cookie names the session the connection ends up with).
"""

from __future__ import annotations

import logging

from ..connection import Connection
from ..core.negotiate import Transport
from ..core.session import REFUSAL_STATUS, StreamDecision
from ..exceptions import ProtocolError
from ..logs import log_event, session_hash
from ..registry import new_session_id
from .exchange import Exchange, Services


class StreamPlan:
    """The outcome: resume ``conn``, or start a session named ``session_id`` once connected."""

    __slots__ = ("conn", "reset", "session_id")

    def __init__(self, conn: Connection | None, session_id: str, *, reset: bool = False) -> None:
        self.conn = conn  # None: a fresh session, made once the handshake succeeded
        self.session_id = session_id
        self.reset = reset  # a counting client asked to resume and cannot: tell it

    @property
    def resumed(self) -> bool:
        return self.conn is not None


async def plan_stream(endpoint: Services, exchange: Exchange) -> StreamPlan:
    """Resume the cookie's session if the rules allow, else plan a fresh one.

    Raises:
        ProtocolError: 406 for an event stream the session refuses (CR queued),
            503 when a fresh session would exceed the session table.
    """
    opts = endpoint.options
    transport = exchange.transport
    conn = endpoint.registry.get(exchange.session_id)
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
    endpoint.check_capacity(transport)
    return StreamPlan(None, new_session_id(), reset=reset)


def begin_counting(conn: Connection, exchange: Exchange, endpoint: Services) -> None:
    """A fresh session for a client that counts: its replay buffer starts at 0."""
    if exchange.seen is not None:
        opts = endpoint.options
        conn.core.count_from(0, opts.replay_max_messages, opts.replay_max_chars)
