"""Several worker processes (and hosts) serving one endpoint, through Redis.

``pip install bullet_py[redis]``; this package is the only one that imports
``redis`` (its asyncio client). Pass one :class:`RedisBackend` per endpoint
to ``setup(app, path, handler, broker=RedisBackend(url))``; handler code is the
same as with the in-memory default. docs/cluster.md tells the whole story;
in short:

- **One bus** (:mod:`.bus`). Every push that may concern another worker, every
  POST forwarded to a session's home and its reply (:mod:`.forward`), is
  appended to one Redis stream that every worker reads from its own position.
- **Polling without sticky sessions** (:mod:`.store`). Pending ids, each
  session's home worker and each polling session's queue are kept in Redis, so
  a ``GET`` landing on any worker takes the next message, and a ``POST``
  landing elsewhere than the home is forwarded to it over the bus. A poll
  waits without a connection of its own; a taken message is held, not lost,
  until the poll's answer is written.
- **Outages** (:mod:`.writer`). Every write goes through one ordered, retried,
  idempotent buffer (bounded in operations and bytes). When it is full, a push
  raises :class:`~bullet_py.BackendError` (``hub`` methods) or returns False
  (``Connection.send``), and is logged. Reads fail over to "no message" (204)
  or 503.
- **Dead workers** (:mod:`.workers`). Each worker refreshes its entry in a
  sorted set; one silent for ``worker_ttl`` is dead: its sessions are forgotten
  when next looked up, its in-flight messages requeued.

Keys, with ``P`` the prefix (``bullet``)::

    P:bus           stream of entries (field k: send broadcast info fwd rep wake gone,
                    many: several small entries of one publisher, written together)
    P:bus:big       list: "<entry id> <bytes> <kind>" of the entries counted in bytes
    P:bus:bytes     their total (bounded by bus_max_bytes)
    P:workers       sorted set: worker id -> expiry time (ms, Redis clock)
    P:pending       sorted set: pending session id -> expiry time
    P:s:<sid>       hash: home, queued (1/0), seen (ms), wseq (last push applied),
                    qc (characters queued), fly (the token of the poll holding a message),
                    cl (a claim's expiry, until its worker confirms the session exists),
                    pk (parked: outlives its home), bid (last bus entry pushed),
                    sent, rc (a counting client's count, characters in its replay)
    P:q:<sid>       list: the session's queued messages (polling sessions)
    P:k:<sid>       sorted set: parked poll token -> expiry time
    P:r:<sid>       list: a counting client's last messages (parked sessions)
    P:f:<worker>    hash: token -> "<sid>\\n<message>" taken by a poll, not yet answered
    P:p:<worker>    set: the parked sessions the worker is home to (P:parkers: such workers)
    P:x:<token>     a take given up on (Redis stalled): the take does nothing if it runs late

The scripts (``lua/*.lua``, called through :mod:`.scripts`) read Redis's own
clock (``TIME``), so hosts need no synchronised clocks. Redis Cluster is not
supported (the scripts touch several keys).
"""

from __future__ import annotations

try:
    import redis  # noqa: F401 - fail here, with the name of the extra
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "bullet_py.backends.redis needs the 'redis' package: pip install 'bullet_py[redis]'"
    ) from exc

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from redis import exceptions as redis_errors

from ...config import Options
from ...exceptions import BackendError
from ...logs import log_event
from ..base import (
    Broker,
    Deliver,
    Envelope,
    Kind,
    LocalSessions,
    Located,
    SessionStore,
    Taken,
)
from .bus import BusReader, envelope_fields
from .forward import Forwarder
from .link import BIG_ENTRY, TRANSIENT, Link, Settings
from .store import Store
from .takeover import catch_up
from .workers import Heartbeat
from .writer import Writer, quote

_BUFFER_FULL = "Redis unreachable and the local buffer is full; push not sent"
#: A broadcast whose message, group and excluded id are shorter in total is
#: grouped (its names, kind, origin and number fit in the rest of BIG_ENTRY).
_SMALL_PUSH = BIG_ENTRY - 64
_BROADCAST_KIND = '"k":"' + Kind.BROADCAST.value + '","m":'


logger = logging.getLogger("bullet_py")

__all__ = ["RedisBackend"]


class RedisBackend(Broker, SessionStore):
    """Broker and session store on one Redis server; one instance per endpoint.

    Args:
        url: ``redis://[user:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        prefix: start of every key; endpoints sharing a Redis need distinct prefixes.
        session_ttl: keys of a session nobody touches for this long are deleted
            (refreshed by activity and by its home while it lives).
        worker_ttl: a worker silent this long is dead; the sessions it was home
            to end, the messages its polls had taken are put back.
        heartbeat: how often a worker says it is alive (default ``worker_ttl / 4``).
        forward_timeout: how long a POST landing elsewhere waits for its home's
            reply (then 202; the reply, if any, is pushed to the session).
        buffer_max_writes, buffer_max_bytes: bound of the writes waiting for
            Redis (during an outage); beyond it pushes are refused and reported.
        reconnect_min, reconnect_max: backoff between reconnection attempts.
        bus_maxlen: entries the bus keeps (approximately); a worker lagging
            further behind misses entries (logged as ``bus_gap``).
        bus_max_bytes: bytes the bus keeps in entries of 512 characters or more
            and in forwarded POSTs; beyond it the bus is trimmed from its oldest
            entries to three quarters of this, reported as ``bus_trimmed``
            (WARNING). Smaller entries are bounded by ``bus_maxlen``.
        bus_max_age: seconds the bus keeps an entry (None: no age bound; trimmed
            at each heartbeat). Forwarded POSTs are kept ``forward_timeout`` at
            most (their POST was answered by then).
        socket_timeout: a Redis command taking longer counts as an outage.
        pool_size: connections for commands (the write buffer and the bus reader have their own).
        write_only: for a process that runs no server (a job): it can push,
            broadcast and send ``info``, and reads nothing.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "bullet",
        # --- lifetimes
        session_ttl: float = 600.0,
        worker_ttl: float = 15.0,
        heartbeat: float | None = None,
        forward_timeout: float = 30.0,
        # --- outages
        buffer_max_writes: int = 1_000_000,
        buffer_max_bytes: int = 64 * 1_048_576,
        reconnect_min: float = 0.05,
        reconnect_max: float = 2.0,
        socket_timeout: float = 5.0,
        # --- sizes
        bus_maxlen: int = 100_000,
        bus_max_bytes: int = 64 * 1_048_576,
        bus_max_age: float | None = 600.0,
        pool_size: int = 16,
        write_only: bool = False,
    ) -> None:
        for name, value in {
            "session_ttl": session_ttl,
            "worker_ttl": worker_ttl,
            "forward_timeout": forward_timeout,
            "reconnect_min": reconnect_min,
            "reconnect_max": reconnect_max,
            "socket_timeout": socket_timeout,
        }.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if bus_max_age is not None and not bus_max_age > 0:
            raise ValueError(f"bus_max_age must be > 0 or None, got {bus_max_age!r}")
        if heartbeat is not None and not 0 < heartbeat < worker_ttl:
            raise ValueError("heartbeat must be > 0 and < worker_ttl")
        for name, count in {
            "buffer_max_writes": buffer_max_writes,
            "buffer_max_bytes": buffer_max_bytes,
            "bus_maxlen": bus_maxlen,
            "bus_max_bytes": bus_max_bytes,
            "pool_size": pool_size,
        }.items():
            if count < 1:
                raise ValueError(f"{name} must be >= 1")
        if not prefix or any(c in prefix for c in " \n"):
            raise ValueError("prefix must be a non-empty token")
        settings = Settings(
            url=url,
            prefix=prefix,
            session_ttl=session_ttl,
            worker_ttl=worker_ttl,
            heartbeat=heartbeat if heartbeat is not None else worker_ttl / 4,
            forward_timeout=forward_timeout,
            buffer_max_writes=buffer_max_writes,
            buffer_max_bytes=buffer_max_bytes,
            reconnect_min=reconnect_min,
            reconnect_max=max(reconnect_min, reconnect_max),
            socket_timeout=socket_timeout,
            bus_maxlen=bus_maxlen,
            bus_max_bytes=bus_max_bytes,
            bus_max_age=bus_max_age,
            pool_size=pool_size,
            write_only=write_only,
        )
        self.url = url
        self.prefix = prefix
        self.session_ttl = session_ttl
        self.worker_ttl = worker_ttl
        self.heartbeat = settings.heartbeat
        self.forward_timeout = forward_timeout
        self.buffer_max_writes = buffer_max_writes
        self.buffer_max_bytes = buffer_max_bytes
        self.reconnect_min = reconnect_min
        self.reconnect_max = settings.reconnect_max
        self.socket_timeout = socket_timeout
        self.bus_maxlen = bus_maxlen
        self.bus_max_bytes = bus_max_bytes
        self.bus_max_age = bus_max_age
        self.pool_size = pool_size
        self.write_only = write_only
        self.worker_id = secrets.token_hex(8)

        self._link = link = Link(settings, self.worker_id)
        self._writer = Writer(link)
        self._store = Store(link, self._writer)
        self._forwarder = Forwarder(link, self._writer, self._store, self._spawn)
        self._heartbeat = Heartbeat(link, self._store.announce_all, self._store.adopt_orphans)
        routes = _Routes(self._store, self._forwarder, self._heartbeat)
        self._bus = BusReader(link, self._writer.wait_room, routes)
        self._tasks: list[asyncio.Task[None]] = []  # the writer first
        self._spawned: set[asyncio.Task[Any]] = set()
        self._started = False

    def __repr__(self) -> str:
        return f"<RedisBackend {self.prefix!r} worker={self.worker_id}>"

    # --- state --------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the last exchange with Redis succeeded."""
        return self._link.online.is_set()

    @property
    def buffered(self) -> int:
        """Writes waiting for Redis (a growing number means an outage)."""
        return len(self._writer)

    @property
    def reconnects(self) -> int:
        """Times Redis answered again after an outage, since start."""
        return self._link.reconnects

    @property
    def distributed(self) -> bool:
        return True

    @property
    def store(self) -> SessionStore | None:
        return None if self.write_only else self

    # --- lifecycle ------------------------------------------------------------

    def bind(self, sessions: LocalSessions, options: Options) -> None:
        self._store.sessions = sessions
        self._store.options = options

    async def start(self, deliver: Deliver) -> None:
        if self._started:
            raise RuntimeError("a RedisBackend serves one endpoint: create one per endpoint")
        self._started = True
        self._bus.deliver = deliver
        link = self._link
        loop = asyncio.get_running_loop()
        link.open()
        self._tasks.append(loop.create_task(self._writer.run_forever()))
        if self.write_only:
            return
        position: str | None = None
        try:
            # Loaded before serving, so the first writes are not held up by loading.
            await link.scripts.load(link.require_client())
            await self._heartbeat.beat(self.worker_ttl)
            position = await self._bus.end()
            link.came_online()
        except TRANSIENT as exc:
            link.went_offline(exc, "start")  # serve anyway; the reader keeps trying
        self._tasks.append(loop.create_task(self._bus.run_forever(position)))
        self._tasks.append(loop.create_task(self._heartbeat.run_forever()))

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what is buffered (up to ``timeout``), leave the cluster, disconnect."""
        link = self._link
        if not self._started or link.closing:
            return
        link.closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The writer flushes first. The loops also stop on ``closing``: redis-py
        # may swallow a cancellation that lands as a reply arrives.
        await _stop([*self._tasks[1:], *self._spawned])
        self._store.release_all()
        self._forwarder.fail_all()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await self._writer.drained.wait()  # the writer keeps retrying with backoff
        await _stop(self._tasks[:1])
        if len(self._writer):
            log_event(logging.ERROR, "backend_unflushed", writes=len(self._writer))
        if not self.write_only:
            with contextlib.suppress(*TRANSIENT, redis_errors.RedisError):
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    await self._heartbeat.beat(-0.001)  # dead now: put back what polls held
                    await self._heartbeat.reap(self.worker_id)
        await link.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # --- Broker ---------------------------------------------------------------------

    async def publish(self, envelope: Envelope) -> None:
        """Append ``envelope`` to the bus, after everything this process wrote before.

        Raises:
            BackendError: Redis is unreachable and the local buffer is full.
            TypeError: an ``info`` payload JSON cannot carry.
        """
        if not self._writer.publish(envelope_fields(envelope)):
            raise BackendError(_BUFFER_FULL)

    async def publish_broadcast(
        self, message: str, *, group: str | None, exclude: str | None, origin: str
    ) -> None:
        """A small broadcast's entry made straight from its parts: no Envelope, no dict.

        Raises:
            BackendError: Redis is unreachable and the local buffer is full.
        """
        if len(message) + len(group or "") + len(exclude or "") >= _SMALL_PUSH:
            await self.publish(
                Envelope(Kind.BROADCAST, message, group=group, exclude=exclude, origin=origin)
            )
            return
        members = _BROADCAST_KIND + quote(message)
        if group is not None:
            members += ',"g":' + quote(group)
        if exclude is not None:
            members += ',"x":' + quote(exclude)
        if not self._writer.publish_small(members):
            raise BackendError(_BUFFER_FULL)

    # --- SessionStore (see .store and .forward) ---------------------------------------

    async def issue(self, session_id: str) -> None:
        await self._store.issue_pending(session_id)

    async def locate(self, session_id: str) -> Located:
        return await self._store.locate(session_id)

    def adopt(self, session_id: str, *, queued: bool) -> None:
        self._store.adopt(session_id, queued=queued)

    def push(self, session_id: str, message: str) -> bool:
        return self._store.push(session_id, message)

    async def take(
        self, session_id: str, timeout: float, alive: Callable[[], bool]
    ) -> Taken | None:
        return await self._store.take(session_id, timeout, alive)

    async def take_next(
        self, session_id: str, timeout: float, alive: Callable[[], bool], done: Taken | None
    ) -> Taken | None:
        return await self._store.take(session_id, timeout, alive, done)

    def ack(self, taken: Taken) -> None:
        self._store.delivered(taken)

    def requeue(self, taken: Taken) -> None:
        self._store.requeue(taken)

    async def forward(self, home: str, session_id: str, message: str) -> str | None:
        return await self._forwarder.forward(home, session_id, message)

    def forget(self, session_id: str) -> None:
        self._store.forget(session_id)

    def parked(self, session_id: str) -> int:
        return self._store.parked(session_id)

    async def idle_for(self, session_ids: Collection[str]) -> dict[str, float]:
        return await self._store.idle_for(session_ids)

    # --- parked sessions (see .store and .takeover) ------------------------------------

    async def register(self, session_id: str) -> None:
        await self._store.register(session_id)

    def park(
        self, session_id: str, queue: list[str] | None, sent: int | None, replay: list[str]
    ) -> None:
        self._store.park(session_id, queue, sent, replay)

    async def wait_parked(self, session_id: str, timeout: float) -> Located:
        return await self._store.wait_parked(session_id, timeout)

    async def rewind(self, session_id: str, seen: int) -> bool:
        return await self._store.rewind(session_id, seen)

    def sent_directly(self, session_id: str, message: str) -> None:
        self._store.sent_directly(session_id, message)

    async def end(self, home: str, session_id: str) -> None:
        await self._forwarder.forward(home, session_id, "", close=True)

    async def catch_up(
        self, session_id: str, entry: str, adopt: Callable[[], None], *, applied_by: str = ""
    ) -> int:
        return await catch_up(
            self._link, self._bus, self._store, session_id, entry, adopt, applied_by=applied_by
        )


class _Routes:
    """Where the bus reader sends the entries that are not pushes."""

    def __init__(self, store: Store, forwarder: Forwarder, heartbeat: Heartbeat) -> None:
        self.wake = store.wake
        self.release = store.release
        self.forwarded = forwarder.forwarded
        self.replied = forwarder.replied
        self.redis_restarted = heartbeat.redis_restarted
        self.probe = store.probe_held


async def _stop(tasks: list[asyncio.Task[Any]], rounds: int = 20) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again if one swallowed it."""
    for _ in range(rounds):
        pending = [t for t in tasks if not t.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.25)
    for task in tasks:
        if not task.done():
            logger.error("task %r did not stop", task)
