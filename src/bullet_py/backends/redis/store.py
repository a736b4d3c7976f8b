"""Polling sessions' shared state in Redis: pending ids, homes, queues, parked polls.

Keys (``P`` the prefix): ``P:pending`` (pending id -> expiry), ``P:s:<sid>``
(hash: home, queued, seen, wseq, qc, fly), ``P:q:<sid>`` (the queue),
``P:k:<sid>`` (parked poll token -> expiry), ``P:f:<worker>`` (token ->
``"<sid>\\n<message>"`` taken by a poll of that worker, not yet answered).

Reads (locate, take, idle_for) run now and fail over to the caller; every
write goes through the ordered write buffer, so it survives an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Collection
from typing import Any

from ...config import Options, Overflow
from ...core.outbox import when_full
from ...exceptions import BackendError
from ...logs import log_event, session_hash
from ..base import LocalSessions, Located, Placement, Taken
from . import scripts
from .link import CLAIM_LEASE, TRANSIENT, Link
from .writer import Writer

_PARK_GRACE = 5.0  # a parked poll's entry outlives its wait by this much
_RECHECK_MIN = 0.1  # a parked poll told to look again waits at least this long
_RECHECK_SLACK = 0.05  # and this much past the moment Redis named
_PAST_DEATH = 0.25  # a session whose home went silent is looked up again this long after


class _Waiter:
    """A poll of this process parked on a session's shared queue."""

    __slots__ = ("event", "handed", "released", "token")

    def __init__(self, token: str) -> None:
        self.token = token
        self.event = asyncio.Event()
        self.released = False
        self.handed: str | None = None  # a message push.lua took for this poll


class Store:
    """The :class:`~bullet_py.backends.base.SessionStore` operations on Redis."""

    def __init__(self, link: Link, writer: Writer) -> None:
        self._link = link
        self._writer = writer
        self.options = Options()
        self.sessions: LocalSessions | None = None
        self._tokens = itertools.count(1)  # polls' take tokens
        self._waiters: dict[str, list[_Waiter]] = {}
        self._homed: dict[str, bool] = {}  # session id -> queued in Redis
        self._claims: dict[str, asyncio.Event] = {}  # claimed ids not yet adopted
        self._acking: dict[str, int] = {}  # session id -> its acknowledgements not yet applied
        self._holding: set[str] = set()  # tokens of polls here answering with a message
        self._parked: set[str] = set()  # homed here and parked: locate asks Redis (CR queued?)

    # --- pending ids and homes -------------------------------------------------------------

    async def issue_pending(self, session_id: str) -> None:
        opts = self.options
        link = self._link
        call = scripts.issue(
            pending=link.pending,
            sid=session_id,
            ttl_ms=int(opts.pending_session_ttl * 1000),
            limit=opts.max_pending_sessions,
        )
        try:
            await link.run(call)
        except TRANSIENT as exc:
            link.went_offline(exc, "issue_pending")
            raise BackendError("Redis unreachable") from exc

    async def locate(self, session_id: str) -> Located:
        if not _plausible(session_id):
            return Located(Placement.UNKNOWN)  # not one of ours: no need to ask Redis
        link = self._link
        keys = link.session_keys(session_id)
        if session_id in self._homed and session_id not in self._parked:
            return Located(Placement.HERE, link.worker_id)
        call = scripts.locate(
            pending=link.pending,
            s=keys.s,
            q=keys.q,
            k=keys.k,
            workers=link.workers,
            sid=session_id,
            me=link.worker_id,
            ttl_ms=link.ttl_ms,
            trust=link.trust(),
            claim_ms=int(CLAIM_LEASE * 1000),
            r=keys.r,
        )
        try:
            placement, home, queued, parked, entry, cr, gap, life = await link.run(call)
        except TRANSIENT as exc:
            link.went_offline(exc, "locate")
            raise BackendError("Redis unreachable") from exc
        if placement in ("claimed", "taken"):
            self._claims[session_id] = asyncio.Event()
        if placement == "taken":
            self._parked.add(session_id)
        return Located(
            Placement(placement),
            str(home),
            queued == "1",
            parked=parked == "1",
            entry=str(entry),
            cr=cr == "1",
            gap=gap == "1",
            home_life=None if int(life) < 0 else int(life) / 1000,
        )

    async def claimed(self, session_id: str, timeout: float) -> None:
        """Wait (up to ``timeout``) until a session this worker claimed is adopted."""
        claim = self._claims.get(session_id)
        if claim is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await claim.wait()

    def adopt(self, session_id: str, *, queued: bool) -> None:
        self._homed[session_id] = queued
        claim = self._claims.pop(session_id, None)
        if claim is not None:
            claim.set()
        self.announce(session_id, queued)  # confirms a claim: the session exists

    def announce(self, session_id: str, queued: bool) -> None:
        link = self._link
        keys = link.session_keys(session_id)
        call = scripts.announce(
            s=keys.s,
            q=keys.q,
            me=link.worker_id,
            queued="1" if queued else "0",
            ttl_ms=link.ttl_ms,
        )
        self._writer.call(call, size=len(session_id))

    async def register(self, session_id: str) -> None:
        """Announce a stream session now, not through the write buffer (see SessionStore)."""
        link = self._link
        keys = link.session_keys(session_id)
        call = scripts.announce(
            s=keys.s, q=keys.q, me=link.worker_id, queued="0", ttl_ms=link.ttl_ms
        )
        try:
            await link.run(call)
        except TRANSIENT as exc:
            link.went_offline(exc, "register")  # adopt() writes it once Redis is back

    def announce_all(self) -> None:
        """Tell Redis again about every session homed here (after a restart, periodically)."""
        for session_id, queued in list(self._homed.items()):
            self.announce(session_id, queued)

    def forget(self, session_id: str) -> None:
        self.release(session_id)
        claim = self._claims.pop(session_id, None)
        if claim is not None:
            claim.set()
        self._homed.pop(session_id, None)
        self._parked.discard(session_id)
        link = self._link
        keys = link.session_keys(session_id)

        def dropped(count: Any) -> None:
            if count:
                log_event(
                    logging.WARNING,
                    "session_dropped",
                    session=session_hash(session_id),
                    queued=count,
                )

        call = scripts.forget(
            s=keys.s,
            q=keys.q,
            k=keys.k,
            bus=link.bus,
            r=keys.r,
            sid=session_id,
            maxlen=link.maxlen,
            me=link.worker_id,
        )
        self._writer.call(call, size=len(session_id), done=dropped)

    async def idle_for(self, session_ids: Collection[str]) -> dict[str, float]:
        ids = list(session_ids)
        if not ids:
            return {}
        link = self._link
        keys = [link.session_keys(i) for i in ids]
        call = scripts.idle(s=[key.s for key in keys], k=[key.k for key in keys])
        try:
            result = await link.run(call)
        except TRANSIENT as exc:
            link.went_offline(exc, "idle_for")
            raise BackendError("Redis unreachable") from exc
        return {i: int(ms) / 1000 for i, ms in zip(ids, result, strict=True) if int(ms) >= 0}

    # --- the queue ----------------------------------------------------------------------

    def push(self, session_id: str, message: str, entry: str | None = None) -> bool:
        """Append to the queue; ``entry``: the bus entry the push comes from (default: the
        one the bus reader is handing on now, if any)."""
        opts = self.options
        link = self._link
        keys = link.session_keys(session_id)
        size = len(message)  # characters, as the in-memory outbox counts
        full = when_full(
            size, opts.outbox_max_chars, drop_oldest=opts.overflow is Overflow.DROP_OLDEST
        )

        def outcome(result: Any) -> None:
            status, count = str(result[0]), int(result[1])
            if status == "handed":
                self._hand(session_id, str(result[2]), message)
                return
            if status == "dup" and len(result) > 2:
                self._hand(session_id, str(result[2]), None)
            self.wake(session_id)  # polls parked here need not wait for the bus
            if status in ("refused", "dropped"):
                log_event(
                    logging.WARNING,
                    "queue_overflow",
                    session=session_hash(session_id),
                    transport="poll",
                    policy=opts.overflow.value,
                    dropped=count,
                )
                if self.sessions is not None:
                    self.sessions.queue_overflowed(session_id)

        call = scripts.push(
            s=keys.s,
            q=keys.q,
            k=keys.k,
            bus=link.bus,
            message=message,
            chars=size,
            seq=next(link.seq),
            max_messages=opts.outbox_max_messages,
            max_chars=opts.outbox_max_chars,
            when_full=full.value,
            ttl_ms=link.ttl_ms,
            me=link.worker_id,
            maxlen=link.maxlen,
            sid=session_id,
            f=link.in_flight,
            prefix=link.settings.prefix,
            bid=link.current_entry if entry is None else entry,
        )
        if self._writer.call(call, size=size + 64, done=outcome):
            return True
        log_event(
            logging.WARNING,
            "queue_overflow",
            session=session_hash(session_id),
            transport="poll",
            policy="backend_buffer_full",
            dropped=1,
        )
        return False

    def _hand(self, session_id: str, token: str, message: str | None) -> None:
        """push.lua gave a message to poll ``token`` (``message``; None: a replayed
        push, which may have): wake that poll with it if it still waits; if it left
        without it, put the message back at the head of the queue.

        A poll that took the message itself meanwhile (its own take found it held
        under its token) holds it: nothing to do. A requeue for a poll that
        answered already is queued after its acknowledgement, so it finds nothing.
        """
        if not token.startswith(f"{self._link.worker_id}:"):
            return  # another worker's poll (a replayed push's 'fly'): not ours to settle
        for waiter in self._waiters.get(session_id, ()):
            if waiter.token == token:
                if message is not None:
                    waiter.handed = message
                waiter.event.set()  # without the message, its take finds it held
                return
        if token not in self._holding:
            self._requeue_token(token)

    async def take(
        self,
        session_id: str,
        timeout: float,
        alive: Callable[[], bool],
        done: Taken | None = None,
    ) -> Taken | None:
        """The next message (see SessionStore.take); ``done``: acknowledged in the same call."""
        link = self._link
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        token = f"{link.worker_id}:{next(self._tokens)}"
        keys = link.session_keys(session_id)
        waiter = _Waiter(token)
        waiters = self._waiters.setdefault(session_id, [])
        while len(waiters) >= self.options.max_polls_per_session:
            oldest = waiters.pop(0)  # a newer poll releases the oldest, as in memory
            oldest.released = True
            oldest.event.set()
        waiters.append(waiter)
        parked = False
        unseen = False  # a take may have run without this poll seeing its outcome
        taken: Taken | None = None
        backoff = link.settings.backoff()
        try:
            while not waiter.released and alive():
                if waiter.handed is not None:
                    parked = False  # push.lua took it off the parked polls
                    taken = Taken(session_id, waiter.handed, token)
                    self._holding.add(token)
                    return taken
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                waiter.event.clear()
                if session_id in self._acking:
                    # This worker's last answer for the session is not acknowledged in
                    # Redis yet: a take now would find that message still in flight
                    # and park, a round trip for nothing. The acknowledgement wakes us.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await waiter.event.wait()
                    continue
                call = scripts.take(
                    s=keys.s,
                    q=keys.q,
                    k=keys.k,
                    f=link.in_flight,
                    workers=link.workers,
                    x=link.fence(token),
                    sid=session_id,
                    token=token,
                    me=link.worker_id,
                    park_ms=int((remaining + _PARK_GRACE) * 1000),
                    ttl_ms=link.ttl_ms,
                    trust=link.trust(),
                    prefix=link.settings.prefix,
                    homed_here="1" if session_id in self._homed else "0",
                    r=keys.r,
                    ack="" if done is None else done.token,
                    max_n=self.options.replay_max_messages,
                    max_c=self.options.replay_max_chars,
                )
                try:
                    status, value = await link.run(call)
                    done = None  # acknowledged with the take (a repeat would change nothing)
                except TRANSIENT as exc:
                    unseen = True
                    link.went_offline(exc, "take")
                    # Wait for the reader to reconnect, then try again with the
                    # same token: a take that did pop is answered from "in flight".
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(backoff.next(), max(0.0, remaining))):
                            await link.online.wait()
                    continue
                if status == "msg":
                    parked = False
                    taken = Taken(session_id, str(value), token)
                    self._holding.add(token)
                    return taken
                if status == "gone":
                    parked = False
                    return None
                parked = True
                wait = deadline - loop.time()
                if value:  # look again then: a worker may be dead, a claim lapsed
                    wait = min(wait, max(_RECHECK_MIN, int(value) / 1000 + _RECHECK_SLACK))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await waiter.event.wait()
            return None
        except asyncio.CancelledError:
            unseen = True  # a take cut short may have popped under this token
            raise
        finally:
            if done is not None:
                # The take never reached Redis (its client left first, say): the message
                # written before must still be acknowledged, or it stays in flight and
                # holds up the session's queue.
                self.delivered(done)
            if taken is None and unseen:
                self._cancel(session_id, token)  # puts back a message handed to it too
            elif taken is None and waiter.handed is not None:
                self._requeue_token(token)  # handed as this poll left: back to the queue
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self._waiters.get(session_id) is waiters:
                del self._waiters[session_id]
            if parked:
                self._writer.call(scripts.unpark(k=keys.k, s=keys.s, token=token), size=len(token))

    def delivered(self, taken: Taken) -> None:
        self._holding.discard(taken.token)
        link = self._link
        session_id = taken.session_id
        acking = self._acking
        acking[session_id] = acking.get(session_id, 0) + 1

        def acked(_: Any) -> None:
            left = acking.pop(session_id, 1) - 1
            if left > 0:
                acking[session_id] = left
            self.wake(session_id)  # a poll here waiting for this one's answer

        call = scripts.ack(
            f=link.in_flight,
            bus=link.bus,
            token=taken.token,
            prefix=link.settings.prefix,
            maxlen=link.maxlen,
            max_n=self.options.replay_max_messages,
            max_c=self.options.replay_max_chars,
        )
        if not self._writer.call(
            call, size=len(taken.token), done=acked, essential=True, settle=True
        ):
            acked(None)  # closing: nothing will acknowledge it, nothing must wait for it

    def requeue(self, taken: Taken) -> None:
        self._holding.discard(taken.token)
        self._requeue_token(taken.token)

    def _cancel(self, session_id: str, token: str) -> None:
        """Fence a take token given up on: a take still on its way does nothing when
        it runs; if one ran already, what it took goes back to the queue."""
        link = self._link
        call = scripts.cancel(
            f=link.in_flight,
            k=link.session_keys(session_id).k,
            x=link.fence(token),
            bus=link.bus,
            token=token,
            prefix=link.settings.prefix,
            maxlen=link.maxlen,
            ttl_ms=link.ttl_ms,
        )
        self._writer.call(call, size=len(token), essential=True)

    def _requeue_token(self, token: str) -> None:
        link = self._link
        call = scripts.requeue(
            f=link.in_flight,
            bus=link.bus,
            token=token,
            prefix=link.settings.prefix,
            maxlen=link.maxlen,
            ttl_ms=link.ttl_ms,
        )
        self._writer.call(call, size=len(token), essential=True)

    # --- parked sessions (docs/sessions.md, "Several workers") ------------------------------

    def park(
        self, session_id: str, queue: list[str] | None, sent: int | None, replay: list[str]
    ) -> None:
        link = self._link
        keys = link.session_keys(session_id)
        self._homed[session_id] = True
        self._parked.add(session_id)
        call = scripts.park(
            s=keys.s,
            q=keys.q,
            k=keys.k,
            bus=link.bus,
            r=keys.r,
            pw=link.parked_here,
            parkers=link.parkers,
            me=link.worker_id,
            ttl_ms=link.ttl_ms,
            sent=-1 if sent is None else sent,
            bid=link.position or "0-0",
            maxlen=link.maxlen,
            sid=session_id,
            queue=queue,
            replay=replay,
        )
        size = sum(len(m) for m in queue or ()) + sum(len(m) for m in replay) + 64
        self._writer.call(call, size=size, essential=True)

    async def adopt_orphans(self, limit: int = 100) -> int:
        """Take over parked sessions of dead workers idle past ``session_idle_timeout``.

        Nobody came back for them: the sessions of this process end them
        (``LocalSessions.adopt_orphan``), so that ``on_close`` runs once.
        """
        link = self._link
        call = scripts.orphans(
            workers=link.workers,
            parkers=link.parkers,
            prefix=link.settings.prefix,
            me=link.worker_id,
            ttl_ms=link.ttl_ms,
            trust=link.trust(),
            claim_ms=int(CLAIM_LEASE * 1000),
            idle_ms=int(self.options.session_idle_timeout * 1000),
            limit=limit,
        )
        found = [str(part) for part in await link.run(call)]
        for session_id, entry in zip(found[::2], found[1::2], strict=True):
            self._claims[session_id] = asyncio.Event()
            self._parked.add(session_id)
            if self.sessions is not None:
                self.sessions.adopt_orphan(session_id, entry)
        return len(found) // 2

    async def wait_parked(self, session_id: str, timeout: float) -> Located:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settings = self._link.settings
        # A home that missed two heartbeats is most likely dead (SIGKILLed with
        # the stream attached, so it will never park the session): wait until
        # it is declared dead, and the next locate takes the session over.
        silent_below = settings.worker_ttl - 2 * settings.heartbeat
        asked = False
        waiter = _Waiter("")  # woken by the park's wake entry, as a parked poll is
        waiters = self._waiters.setdefault(session_id, [])
        waiters.append(waiter)
        try:
            while True:
                waiter.event.clear()
                located = await self.locate(session_id)
                if located.placement is not Placement.ELSEWHERE or located.parked:
                    return located
                if not asked:
                    # Its home probes the stream holding it (a silent drop is
                    # dropped there, and the session parked, which wakes this).
                    asked = self._writer.publish({"k": "probe", "t": located.home, "s": session_id})
                life = located.home_life
                if life is not None and life < silent_below and not located.queued:
                    deadline = max(deadline, loop.time() + life + _PAST_DEATH)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return located
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await waiter.event.wait()
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self._waiters.get(session_id) is waiters:
                del self._waiters[session_id]

    async def rewind(self, session_id: str, seen: int) -> bool:
        link = self._link
        keys = link.session_keys(session_id)
        call = scripts.rewind(
            s=keys.s,
            q=keys.q,
            r=keys.r,
            k=keys.k,
            bus=link.bus,
            seen=seen,
            sid=session_id,
            maxlen=link.maxlen,
            max_n=self.options.replay_max_messages,
            max_c=self.options.replay_max_chars,
        )
        try:
            return str(await link.run(call)) == "ok"
        except TRANSIENT as exc:
            link.went_offline(exc, "rewind")
            raise BackendError("Redis unreachable") from exc

    def sent_directly(self, session_id: str, message: str) -> None:
        link = self._link
        keys = link.session_keys(session_id)
        call = scripts.record(
            s=keys.s,
            r=keys.r,
            message=message,
            me=link.worker_id,
            seq=next(link.seq),
            max_n=self.options.replay_max_messages,
            max_c=self.options.replay_max_chars,
        )
        self._writer.call(call, size=len(message) + 64, essential=True)

    # --- polls parked in this process ------------------------------------------------------

    def wake(self, session_id: str) -> None:
        """Have the polls parked here for ``session_id`` try again."""
        for waiter in self._waiters.get(session_id, ()):
            waiter.event.set()

    def probe_held(self, session_id: str) -> None:
        """The bus brought another worker's question about a session held here."""
        if self.sessions is not None:
            self.sessions.probe_held(session_id)

    def release(self, session_id: str) -> None:
        for waiter in self._waiters.get(session_id, ()):
            waiter.released = True
            waiter.event.set()

    def release_all(self) -> None:
        for session_id in list(self._waiters):
            self.release(session_id)

    def parked(self, session_id: str) -> int:
        return len(self._waiters.get(session_id, ()))


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _plausible(session_id: str) -> bool:
    """Shaped like an id ``registry.new_session_id`` makes (URL-safe base64)."""
    return 16 <= len(session_id) <= 64 and _ID_CHARS.issuperset(session_id)
