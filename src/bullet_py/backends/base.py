"""The seam where sessions of several processes meet.

A :class:`Broker` carries :class:`Envelope` s between processes. The hub
delivers to sessions of its own process directly and publishes everything that
may concern another process; each process's broker hands what it receives back
to its hub with the ``deliver`` callback given to :meth:`Broker.start`.

A broker may also offer a :class:`SessionStore` (``Broker.store``): polling
sessions' pending ids, home process and queue kept where every process can
reach them, so that a poll or a POST may land on any process.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Callable, Collection
from typing import Any, Protocol

from ..config import Options


class Kind(enum.Enum):
    SEND = "send"  # one message to one session
    BROADCAST = "broadcast"  # one message to a group or everyone
    INFO = "info"  # a payload for a session's on_info


@dataclasses.dataclass(slots=True)
class Envelope:
    """One push, as it travels between processes.

    Not frozen, though never changed: a frozen dataclass sets each field
    through a call, and every push to another process makes one.
    """

    kind: Kind
    message: str = ""
    session_id: str | None = None
    group: str | None = None
    exclude: str | None = None  # a session id a broadcast skips
    info: Any = None
    origin: str = ""  # the publishing process, so it can skip its own envelopes


Deliver = Callable[[Envelope], None]


class Broker(abc.ABC):
    """Moves envelopes between processes."""

    @abc.abstractmethod
    async def start(self, deliver: Deliver) -> None:
        """Begin listening; call ``deliver`` for every envelope from another process."""

    @abc.abstractmethod
    async def publish(self, envelope: Envelope) -> None:
        """Send ``envelope`` to every other process."""

    async def publish_broadcast(
        self, message: str, *, group: str | None, exclude: str | None, origin: str
    ) -> None:
        """Send a broadcast to every other process (``Hub.broadcast`` calls this).

        The default wraps it in an :class:`Envelope` for :meth:`publish`; a
        broker may override it to skip making one, on the path of every push.
        """
        await self.publish(
            Envelope(Kind.BROADCAST, message, group=group, exclude=exclude, origin=origin)
        )

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening and release connections."""

    @property
    def distributed(self) -> bool:
        """False when there is no other process to publish to."""
        return True

    @property
    def store(self) -> SessionStore | None:
        """Shared session state, for backends that let any process serve any poll."""
        return None


# --- polling sessions shared by several processes ---------------------------


class Placement(enum.Enum):
    """Where the session a cookie names lives, as the store sees it."""

    CLAIMED = "claimed"  # a pending id this call claimed: the session is now this process's
    HERE = "here"  # a session of this process
    ELSEWHERE = "elsewhere"  # a live session of another process (its home)
    UNKNOWN = "unknown"  # never issued, expired, ended, or its home process died
    TAKEN = "taken"  # a parked session whose home died: this call took it over for this process


@dataclasses.dataclass(frozen=True, slots=True)
class Located:
    """The answer of :meth:`SessionStore.locate`."""

    placement: Placement
    home: str = ""  # the home process, for ELSEWHERE; for TAKEN, the old home
    queued: bool = True  # False: a session whose queue stays in its home (an event stream)
    parked: bool = False  # its queue moved to the store when its stream dropped (see park)
    entry: str = ""  # TAKEN: the last bus entry its old home applied (see SessionStore.catch_up)
    cr: bool = False  # the head of its queue holds CR, which an event stream cannot carry
    # TAKEN from a home that died with the session's stream attached: what that
    # process held is gone, so a client that counts must be told to start again.
    gap: bool = False
    # ELSEWHERE: seconds its home lives on if it stays silent (None: not known).
    home_life: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Taken:
    """One message a poll took from a shared queue.

    Until the poll reports :meth:`SessionStore.ack` or
    :meth:`SessionStore.requeue`, the store keeps it aside, so that a process
    dying in between does not lose it.
    """

    session_id: str
    message: str
    token: str


class LocalSessions(Protocol):
    """What a store needs from the sessions of its own process (the hub provides it)."""

    async def handle_forwarded(self, session_id: str, message: str) -> tuple[bool, str | None]:
        """Run a message another process received for a session of this one.

        Returns whether the session lives here, and the handler's reply.
        """

    def queue_overflowed(self, session_id: str) -> None:
        """The shared queue of a session of this process refused or dropped a message."""

    def close_forwarded(self, session_id: str) -> bool:
        """Its client ended a session of this process on another one; False if not here."""

    def probe_held(self, session_id: str) -> None:
        """A client asks another process for this session: check the stream holding it.

        A dead stream (a silent drop) is dropped, and the session moves to the
        store (parked) where the asking process finds it; a live one keeps it.
        """

    def adopt_orphan(self, session_id: str, entry: str) -> None:
        """This process took over a parked session nobody came back for: end it here.

        ``entry``: as for :meth:`SessionStore.catch_up`.
        """


class SessionStore(abc.ABC):
    """Where sessions are found: pending ids, each session's home, polling queues.

    Every endpoint has one. The in-memory store (:class:`MemoryStore`, the
    default) keeps all of it in the process: pending ids in the registry and
    each session's queue in the session itself. A shared store (Redis) keeps
    it where every process can reach it, so a polling client needs no sticky
    load balancer: a ``GET`` landing on any process takes from the session's
    queue, and a ``POST`` landing elsewhere than the home is forwarded to it
    and answered with the home's reply. The web layer follows one path for
    both; only :attr:`holds_queues` says where a polling session's messages wait.
    """

    holds_queues: bool = True
    """Pushes to a polling session go through :meth:`push` (else into the session itself)."""

    @abc.abstractmethod
    def bind(self, sessions: LocalSessions, options: Options) -> None:
        """Attach the sessions of this process and their endpoint's options (before start)."""

    @abc.abstractmethod
    async def issue(self, session_id: str) -> None:
        """Remember an id handed to a new polling client until it comes back or expires."""

    @abc.abstractmethod
    async def locate(self, session_id: str) -> Located:
        """Claim ``session_id`` if it is pending, else say where its session lives."""

    @abc.abstractmethod
    def adopt(self, session_id: str, *, queued: bool) -> None:
        """A session of this process now answers to ``session_id``.

        ``queued``: its outgoing messages live in the store (a polling session,
        when :attr:`holds_queues`) rather than in the process (a stream, which
        only needs POSTs landing elsewhere forwarded to it).
        """

    @abc.abstractmethod
    def push(self, session_id: str, message: str) -> bool:
        """Append to the session's shared queue, in call order, without waiting.

        False if the message could not even be buffered (the store is unreachable
        and its local buffer full). Overflow of the queue itself is reported
        later through :meth:`LocalSessions.queue_overflowed`.
        """

    @abc.abstractmethod
    async def take(
        self, session_id: str, timeout: float, alive: Callable[[], bool]
    ) -> Taken | None:
        """Wait up to ``timeout`` for the next message; None on timeout or session end.

        ``alive`` tells whether the poll's client is still connected: a poll
        whose client left never takes a message.
        """

    async def take_next(
        self, session_id: str, timeout: float, alive: Callable[[], bool], done: Taken | None
    ) -> Taken | None:
        """:meth:`take`, acknowledging ``done`` (the message written before) first.

        A store may do both in one step: a stream view takes message after message.
        """
        if done is not None:
            self.ack(done)
        return await self.take(session_id, timeout, alive)

    @abc.abstractmethod
    def ack(self, taken: Taken) -> None:
        """The poll's answer carrying ``taken`` was written."""

    @abc.abstractmethod
    def requeue(self, taken: Taken) -> None:
        """The answer could not be written: put the message back at the head of its queue."""

    @abc.abstractmethod
    async def forward(self, home: str, session_id: str, message: str) -> str | None:
        """Have the home process run ``message`` in its session; the reply, or None.

        Raises:
            SessionNotFound: the session is not (or no longer) at ``home``.
            TimeoutError: no reply in time; the home still gets the message,
                and a reply it makes is pushed to the session instead.
            BackendError: the store is unreachable and its local buffer full.
        """

    @abc.abstractmethod
    def forget(self, session_id: str) -> None:
        """The session ended: answer the polls waiting on it, drop its shared state and queue."""

    @abc.abstractmethod
    def parked(self, session_id: str) -> int:
        """How many polls of this process wait on ``session_id`` (not shared state).

        A session with a poll waiting must not expire; tests and metrics read it too.
        """

    @abc.abstractmethod
    async def idle_for(self, session_ids: Collection[str]) -> dict[str, float]:
        """Seconds since any process last served each session (0 while a poll waits)."""

    # --- sessions that outlive their stream and their process (parking) ---------------
    # Optional: only a store that holds queues (:attr:`holds_queues`) parks
    # sessions; the in-memory store keeps every session in its process.

    async def register(self, session_id: str) -> None:
        """A stream session of this process will answer to ``session_id``: say so now,
        before its cookie is handed out (another process may see the cookie next)."""
        return None

    def park(
        self, session_id: str, queue: list[str] | None, sent: int | None, replay: list[str]
    ) -> None:
        """Move a session's queue here (``None``: it is here already) and mark it parked.

        A parked session is served by any process (a stream there is a view of
        it) and, once its home process is dead, taken over by the next process
        its client reaches (``locate`` answers ``TAKEN``). ``sent`` and
        ``replay``: a counting client's count and last messages (``sent``
        None: the client does not count).
        """
        raise NotImplementedError("this store keeps sessions in their process")

    async def wait_parked(self, session_id: str, timeout: float) -> Located:
        """Wait (up to ``timeout``) for a session elsewhere to be parked; where it is then."""
        raise NotImplementedError("this store keeps sessions in their process")

    async def rewind(self, session_id: str, seen: int) -> bool:
        """A counting client received ``seen`` messages: requeue what it missed; False for a gap."""
        raise NotImplementedError("this store keeps sessions in their process")

    def sent_directly(self, session_id: str, message: str) -> None:
        """A view wrote ``message`` without the queue (a reply): a counting client counts it."""
        raise NotImplementedError("this store keeps sessions in their process")

    async def end(self, home: str, session_id: str) -> None:
        """The client ended a parked session on a view elsewhere: have its home close it.

        Raises: as :meth:`forward`.
        """
        raise NotImplementedError("this store keeps sessions in their process")

    async def catch_up(
        self, session_id: str, entry: str, adopt: Callable[[], None], *, applied_by: str = ""
    ) -> int:
        """After ``locate`` answered ``TAKEN``: apply the pushes its old home never applied.

        Pushes to the session made after bus entry ``entry`` (by any process
        but ``applied_by``, the old home, which applied its own broadcasts
        when it made them) are appended to its queue in order; ``adopt``
        registers the new session in this process at the moment after which
        pushes reach it directly. Returns how many were applied.
        """
        raise NotImplementedError("this store keeps sessions in their process")
