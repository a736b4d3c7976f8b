"""The rules of one session, without I/O: its states, the events that move it, what follows.

Every transport is a view of one session. What a session may do next depends
only on its state, so the states and the moves between them are written down
once, as data (:data:`TRANSITIONS`), in the manner of h11's connection state
tables; :class:`SessionCore` applies them and keeps what goes with them (the
outbound queue and the parked polls). It never touches a socket, a clock or
an event loop: the asyncio glue (:mod:`bullet_py.connection`) feeds it events
and carries out what it answers, and the tests drive it synchronously.

States::

    DETACHED ──attach──▶ ATTACHED ──detach──▶ DETACHED
       │  ▲                 │
       │  └──attach(ws)─┐   └──cannot_carry──▶ STREAM_REFUSED
       │                │                          │
       └──────close─────┴──────────close───────────┴──▶ CLOSING ──finish──▶ CLOSED

- ``DETACHED``: open, no stream owns delivery; pushes queue; polls may park.
- ``ATTACHED``: a WebSocket or an event stream delivers the queue.
- ``STREAM_REFUSED``: the head of the queue holds a CR, which an event stream
  cannot carry; the next event-stream request is refused (406) so the client
  falls back to polling, which takes it. A WebSocket may still attach.
- ``CLOSING``: the end was asked for; polls are answered empty, the
  transport finishes up, pushes are refused.
- ``CLOSED``: finished; ``on_close`` has run (if ``on_open`` had).

Whether a stream still holds the session is kept beside the state
(``held``): a session closed while its WebSocket is open stays held until
that transport has finished up, and only then is it finished. Parked polls
are not a state of their own either: any open session that no stream holds
may have a few (two tabs sharing a cookie are legal), up to a bound.
"""

from __future__ import annotations

import enum
from typing import Protocol

from ..config import Overflow
from .negotiate import Transport
from .outbox import Offer, Outbox
from .replay import Replay


class State(enum.Enum):
    DETACHED = "detached"
    ATTACHED = "attached"
    STREAM_REFUSED = "stream_refused"
    CLOSING = "closing"
    CLOSED = "closed"


class Event(enum.Enum):
    ATTACH = "attach"  # a WebSocket or an event stream takes over delivery
    DETACH = "detach"  # that stream ended without ending the session
    CANNOT_CARRY = "cannot_carry"  # an event stream met a message it cannot carry
    CLOSE = "close"  # the handler, the server or a policy ends the session
    FINISH = "finish"  # the transport is done: run on_close, forget the session


_D, _A, _R = State.DETACHED, State.ATTACHED, State.STREAM_REFUSED
_CG, _CD = State.CLOSING, State.CLOSED

TRANSITIONS: dict[tuple[State, Event], State] = {
    (_D, Event.ATTACH): _A,
    (_R, Event.ATTACH): _A,  # a WebSocket only: see stream_request()
    (_A, Event.DETACH): _D,
    (_R, Event.DETACH): _R,  # the refusing stream detaches after marking
    (_A, Event.CANNOT_CARRY): _R,
    (_R, Event.CANNOT_CARRY): _R,
    (_D, Event.CLOSE): _CG,
    (_A, Event.CLOSE): _CG,
    (_R, Event.CLOSE): _CG,
    (_CG, Event.CLOSE): _CG,
    (_CD, Event.CLOSE): _CD,
    (_CG, Event.DETACH): _CG,
    (_CD, Event.DETACH): _CD,
    (_D, Event.FINISH): _CD,  # shutdown finishes sessions directly
    (_A, Event.FINISH): _CD,
    (_R, Event.FINISH): _CD,
    (_CG, Event.FINISH): _CD,
    (_CD, Event.FINISH): _CD,
}
"""Every legal move; any other (state, event) pair is a bug in the caller."""


class SessionStateError(RuntimeError):
    """An event the session's state does not allow (a bug in the glue, not the peer)."""


class StreamDecision(enum.Enum):
    """What a WebSocket or event-stream request naming this session gets."""

    RESUME = "resume"  # attach to this session
    PROBE = "probe"  # a stream holds it: resume only if that stream is found dead at once
    REFUSE = "refuse"  # 406: the client must fall back to polling
    FRESH = "fresh"  # leave this session alone; the request gets a new one


class Delivery(enum.Enum):
    """What :meth:`SessionCore.push` did with a message."""

    HANDED = "handed"  # a parked poll took it
    QUEUED = "queued"  # in the outbox: wake the writer
    DROPPED_OLDEST = "dropped_oldest"  # queued after discarding older messages
    REFUSED = "refused"  # not queued (closed session, or full under drop_newest)
    OVERFLOW_CLOSE = "overflow_close"  # full under the close policy: close with 1008


# Read on every push: globals cost less than enum members' lookups.
_QUEUED = Delivery.QUEUED
_OFFER_QUEUED = Offer.QUEUED
_DROP_OLDEST = Overflow.DROP_OLDEST

REFUSAL_STATUS = 406
"""The status an event-stream request gets in STREAM_REFUSED."""


class Poll(Protocol):
    """A parked long-poll, as the core sees it."""

    def is_open(self) -> bool:
        """Its client is still connected and it has no answer yet."""

    def answer(self, message: str | None) -> None:
        """Give it its message, or None for an empty answer (204)."""


class SessionCore:
    """One session's state, queue and parked polls; every rule, no I/O."""

    __slots__ = (
        "close_code",
        "closing",
        "heard_from",
        "held",
        "opened",
        "outbox",
        "overflow",
        "polls",
        "replay",
        "state",
        "transport",
    )

    def __init__(self, transport: Transport, outbox: Outbox, overflow: Overflow) -> None:
        self.state = State.DETACHED
        # CLOSING or CLOSED: nothing more goes in or out. Kept beside the
        # state (by _move) because every message reads it, several times.
        self.closing = False
        self.transport = transport  # the transport serving (or that last served) the session
        self.outbox = outbox
        self.overflow = overflow
        self.polls: list[Poll] = []  # oldest first
        self.replay: Replay | None = None  # kept once the client counts what it receives
        self.close_code = 1000
        self.held = False  # a WebSocket or event stream holds the session (even closing)
        self.opened = False  # on_open was called: on_close is owed
        self.heard_from = False  # a client message reached the handler

    def _move(self, event: Event) -> State:
        try:
            self.state = state = TRANSITIONS[self.state, event]
        except KeyError:
            raise SessionStateError(f"{event.value} in state {self.state.value}") from None
        self.closing = state is State.CLOSING or state is State.CLOSED
        return state

    # --- questions ------------------------------------------------------------

    @property
    def may_expire(self) -> bool:
        """Idle expiry applies: open, no stream, no poll waiting."""
        return (self.state is State.DETACHED or self.state is State.STREAM_REFUSED) and not (
            self.held or self.polls
        )

    @property
    def anonymous(self) -> bool:
        """Evictable when the session table is full (docs/robustness.md item 76).

        Open, yet the client has never sent it a message, no stream holds it
        and no poll waits on it: an id nobody is using now, as an attacker's
        opened-and-dropped event streams are. A session whose client spoke
        once, or that a transport is serving, is established and never evicted.
        """
        return not self.heard_from and self.may_expire

    def stream_request(self, transport: Transport) -> StreamDecision:
        """A stream request carries this session's cookie: resume it, probe, refuse, or start anew.

        Every transport is a view of one session, so any stream may resume a
        session no connection is using. One that a stream holds is resumed
        only if that stream is dead (``PROBE``: the glue asks it at once; a
        live one means another tab, which gets a session of its own). A
        session a poll is waiting on belongs to a polling tab: never taken.
        """
        if self.closing:
            return StreamDecision.FRESH
        if self.held:
            return StreamDecision.PROBE
        if self.polls:
            return StreamDecision.FRESH
        if transport is Transport.EVENTSOURCE and self.state is State.STREAM_REFUSED:
            return StreamDecision.REFUSE
        return StreamDecision.RESUME

    def poll_allowed(self) -> bool:
        """A poll naming this session may take from it (never from a live stream's)."""
        return not self.held

    # --- lifecycle events -----------------------------------------------------

    def attach(self, transport: Transport) -> None:
        if self.held:
            raise SessionStateError("attach while a stream holds the session")
        self._move(Event.ATTACH)
        self.transport = transport
        self.held = True

    def detach(self) -> None:
        """The stream let go; a CLOSING session is now ready to finish."""
        self._move(Event.DETACH)
        self.held = False

    def cannot_carry(self) -> None:
        """The attached event stream met a message holding CR at the head of the queue."""
        self._move(Event.CANNOT_CARRY)

    def close(self, code: int) -> bool:
        """Begin the end; True if this call began it.

        Every parked poll is answered empty at once. The glue then wakes the
        stream's writer, and finishes the session at once unless a stream
        still ``held`` it (that transport finishes it when it lets go).
        """
        if self.closing:
            return False
        self.close_code = code
        self._move(Event.CLOSE)
        self._release_polls()
        return True

    def finish(self) -> bool:
        """The end; True the first time (the glue then runs on_close if ``opened``)."""
        if self.state is State.CLOSED:
            return False
        self._move(Event.FINISH)
        self.held = False
        self._release_polls()
        return True

    # --- messages out -----------------------------------------------------------

    def push(self, message: str) -> Delivery:
        """Hand ``message`` to the oldest parked poll, or queue it under the bounds.

        A poll whose client left is answered empty and skipped. An empty
        message never goes to a poll (an XHR answer cannot carry it).
        """
        if self.closing:
            return Delivery.REFUSED
        polls = self.polls
        while polls:
            poll = polls[0]
            if not poll.is_open():
                del polls[0]
                poll.answer(None)
                continue
            if message and not self.outbox:
                del polls[0]
                if self.replay is not None:
                    self.replay.record(message)
                poll.answer(message)
                return Delivery.HANDED
            break
        overflow = self.overflow
        outcome = self.outbox.offer(message, drop_oldest=overflow is _DROP_OLDEST)
        if outcome is _OFFER_QUEUED:
            if polls:
                self.feed_polls()
            return _QUEUED
        if outcome is Offer.REFUSED:
            return Delivery.OVERFLOW_CLOSE if overflow is Overflow.CLOSE else Delivery.REFUSED
        if polls:
            self.feed_polls()
        return Delivery.DROPPED_OLDEST

    def requeue(self, message: str) -> None:
        """A message whose write failed goes back to the head, never refused."""
        if self.replay is not None:
            self.replay.unrecord()
        self.outbox.requeue(message)
        self.feed_polls()

    def count_from(self, seen: int, max_messages: int, max_chars: int) -> bool:
        """The client counts what it receives and has had ``seen``: resend what it missed.

        The first count starts the replay buffer. False when the missed
        messages are no longer all kept (a gap): the session cannot continue
        for this client without a hole.
        """
        replay = self.replay
        if replay is None:
            self.replay = Replay(max_messages, max_chars)
            self.replay.sent = seen
            return True
        again = replay.rewind(seen)
        if again is None:
            return False
        for message in reversed(again):
            self.outbox.requeue(message)
        if again:
            self.feed_polls()
        return True

    def take(self) -> str | None:
        """The next message for the stream's writer (counted as sent)."""
        message = self.outbox.take()
        if message is not None and self.replay is not None:
            self.replay.record(message)
        return message

    def take_for_xhr(self) -> str | None:
        """The next message an XHR answer can carry (empty ones are dropped; counted as sent)."""
        outbox = self.outbox
        while True:
            message = outbox.take()
            if message is None:
                return None
            if message:
                if self.replay is not None:
                    self.replay.record(message)
                return message

    def sent_directly(self, message: str) -> None:
        """The transport wrote ``message`` without queueing it (a WebSocket reply)."""
        if self.replay is not None:
            self.replay.record(message)

    def park(self, poll: Poll, max_polls: int) -> None:
        """Keep ``poll`` until a message comes; the oldest beyond ``max_polls`` answer empty.

        A counting client (one with a replay buffer) polls one at a time, so
        its new poll means the one before is dead, noticed or not; two parked
        polls would each take a message, and its count could not say which
        one arrived. So it keeps one.
        """
        if self.replay is not None:
            max_polls = 1
        polls = self.polls
        while len(polls) >= max_polls:
            polls.pop(0).answer(None)
        polls.append(poll)

    def unpark(self, poll: Poll) -> None:
        """``poll`` ended by itself (timeout, its client left)."""
        try:
            self.polls.remove(poll)
        except ValueError:
            pass

    def feed_polls(self) -> None:
        """Hand queued messages to parked polls, oldest poll first."""
        polls = self.polls
        while polls and self.outbox:
            poll = polls[0]
            if not poll.is_open():
                del polls[0]
                poll.answer(None)
                continue
            message = self.take_for_xhr()
            if message is None:
                return
            del polls[0]
            poll.answer(message)

    def _release_polls(self) -> None:
        polls, self.polls = self.polls, []
        for poll in polls:
            poll.answer(None)
