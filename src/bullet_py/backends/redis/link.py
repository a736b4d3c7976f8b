"""What every part of the Redis backend shares: settings, clients, keys, whether Redis answers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff, NoBackoff

from ...exceptions import BackendError
from ...logs import log_event
from .lane import Lane
from .packing import hiredis_packing
from .scripts import Call, Scripts

#: Errors after which the same request may succeed later: retry, never crash.
TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError (restarting)
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica being promoted
    redis_errors.MasterDownError,
    redis_errors.TryAgainError,
    redis_errors.OutOfMemoryError,
    OSError,
    TimeoutError,
)


def busy(result: Any) -> bool:
    """Redis refusing for a while (a long script, loading a dump): retry, do not drop."""
    return isinstance(result, redis_errors.ResponseError) and str(result).startswith(
        ("BUSY", "LOADING", "MASTERDOWN", "READONLY", "OOM", "TRYAGAIN")
    )


class Backoff:
    """Delays between attempts after failures, from about ``low`` up to ``high`` seconds.

    The curve is redis-py's ``EqualJitterBackoff``: ``min(high, low·2ⁿ)``,
    half of it fixed and half random; this class only counts the failures.
    """

    __slots__ = ("_curve", "_failures")

    _MAX_FAILURES = 64  # the curve is flat long before; 2**n must stay a float

    def __init__(self, low: float, high: float) -> None:
        self._curve = EqualJitterBackoff(cap=high, base=low)
        self._failures = 0

    def next(self) -> float:
        delay = float(self._curve.compute(self._failures))
        self._failures = min(self._failures + 1, self._MAX_FAILURES)
        return delay

    def reset(self) -> None:
        self._failures = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The constructor's arguments of :class:`~bullet_py.backends.redis.RedisBackend`."""

    url: str
    prefix: str
    session_ttl: float
    worker_ttl: float
    heartbeat: float
    forward_timeout: float
    buffer_max_writes: int
    buffer_max_bytes: int
    reconnect_min: float
    reconnect_max: float
    socket_timeout: float
    bus_maxlen: int
    bus_max_bytes: int
    bus_max_age: float | None
    pool_size: int
    write_only: bool

    @property
    def session_ttl_ms(self) -> int:
        return int(self.session_ttl * 1000)

    def backoff(self) -> Backoff:
        return Backoff(self.reconnect_min, self.reconnect_max)


#: How long a claimed pending id waits for its worker to confirm the session exists.
CLAIM_LEASE = 5.0

#: Bus entries of at least this many characters (names and values), and forwarded POSTs,
#: count towards ``bus_max_bytes`` (lua/append.lua); smaller ones are bounded by count.
BIG_ENTRY = 512


class SessionKeys(NamedTuple):
    s: str  # hash: home, queued, seen, wseq, qc (characters queued), fly
    q: str  # list: the queued messages
    k: str  # sorted set: parked poll tokens
    r: str  # list: a counting client's last messages (its replay), oldest first


class Link:
    """The clients, the scripts and the connection state of one backend."""

    def __init__(self, settings: Settings, worker_id: str) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.client: aioredis.Redis | None = None  # commands
        self.lane: Lane | None = None  # the write buffer's batches (a connection of its own)
        self.reader: aioredis.Redis | None = None  # makes the bus reader's lane, never used
        self.read_lane: Lane | None = None  # the bus reader's blocking reads and checks
        self._scripts: Scripts | None = None
        self.seq = itertools.count(1)  # this process's bus entries, queue pushes, requests
        # The bus entry being handed on now ("" outside), and the last one handed on:
        # pushes made for an entry name it (lua/push.lua), parking names the last.
        self.current_entry = ""
        self.position: str | None = None
        self.closing = False
        self.online = asyncio.Event()
        self._offline_since: float | None = None
        self._settled_at = 0.0  # before this, do not declare other workers dead
        self.reconnects = 0  # times Redis answered again after an outage
        self._closing_idle: set[asyncio.Task[Any]] = set()  # see _drop_idle_connections
        self.buffered: Callable[[], int] = lambda: 0  # writes waiting (set by the writer)
        self.ttl_ms = settings.session_ttl_ms  # keys of a session untouched this long expire
        self.maxlen = settings.bus_maxlen
        prefix = settings.prefix
        self.bus = f"{prefix}:bus"
        self.bus_big = f"{prefix}:bus:big"  # the entries counted in bytes, oldest first
        self.bus_bytes = f"{prefix}:bus:bytes"  # their total
        self.workers = f"{prefix}:workers"
        self.pending = f"{prefix}:pending"
        self.in_flight = f"{prefix}:f:{worker_id}"
        self.parkers = f"{prefix}:parkers"  # workers with parked sessions
        self.parked_here = f"{prefix}:p:{worker_id}"  # the sessions this worker parked

    def fence(self, token: str) -> str:
        """The key marking a take token as given up (a late take with it does nothing)."""
        return f"{self.settings.prefix}:x:{token}"

    def read_position_key(self, worker_id: str) -> str:
        """Where a worker's heartbeat records how far its bus reader applied (lua/beat.lua)."""
        return f"{self.settings.prefix}:wpos:{worker_id}"

    def session_keys(self, session_id: str) -> SessionKeys:
        prefix = self.settings.prefix
        return SessionKeys(
            f"{prefix}:s:{session_id}",
            f"{prefix}:q:{session_id}",
            f"{prefix}:k:{session_id}",
            f"{prefix}:r:{session_id}",
        )

    # --- clients and scripts ----------------------------------------------------------

    def open(self) -> None:
        """Create the clients (they connect on first use)."""
        settings = self.settings
        self.client = self._connect(pool_size=settings.pool_size, timeout=settings.socket_timeout)
        self.lane = Lane(self.client)
        self._scripts = Scripts(self.client)
        if not settings.write_only:
            self.reader = self._connect(pool_size=1, timeout=settings.socket_timeout + self.block)
            self.read_lane = Lane(self.reader)

    @property
    def block(self) -> float:
        """How long one read of the bus waits for entries."""
        return min(1.0, self.settings.socket_timeout / 2)

    def _connect(self, *, pool_size: int, timeout: float) -> aioredis.Redis:
        pool = aioredis.BlockingConnectionPool.from_url(
            self.settings.url,
            max_connections=pool_size,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 2.0),
            decode_responses=True,
            encoding_errors="surrogatepass",  # a lone surrogate round-trips
            retry=Retry(NoBackoff(), 0),  # the backend retries, knowing what is idempotent
            client_name=f"{self.settings.prefix}:{self.worker_id}",
        )
        # Commands packed by hiredis, as redis-py's synchronous client does (see .packing).
        pool.connection_class = hiredis_packing(pool.connection_class)
        return aioredis.Redis.from_pool(pool)  # closing the client closes the pool

    def require_client(self) -> aioredis.Redis:
        if self.client is None:
            raise BackendError("the backend is not started")
        return self.client

    def require_lane(self) -> Lane:
        if self.lane is None:
            raise BackendError("the backend is not started")
        return self.lane

    def require_read_lane(self) -> Lane:
        if self.read_lane is None:
            raise BackendError("the backend is not started, or writes only")
        return self.read_lane

    @property
    def scripts(self) -> Scripts:
        if self._scripts is None:
            raise BackendError("the backend is not started")
        return self._scripts

    async def run(self, call: Call) -> Any:
        """Run a script now (not through the write buffer)."""
        return await self.scripts.run(call)

    # --- is Redis answering ---------------------------------------------------------------

    def trust(self) -> str:
        """'1' when this worker has been connected long enough to judge others dead."""
        return "1" if asyncio.get_running_loop().time() >= self._settled_at else "0"

    def went_offline(self, exc: BaseException, during: str) -> None:
        if self.online.is_set() or self._offline_since is None:
            self._offline_since = asyncio.get_running_loop().time()
            self._drop_idle_connections()
            log_event(
                logging.WARNING,
                "backend_disconnected",
                during=during,
                error=type(exc).__name__,
                detail=repr(str(exc)[:80]),
                buffered=self.buffered(),
            )
        self.online.clear()

    def came_online(self) -> None:
        if self.online.is_set():
            return
        loop = asyncio.get_running_loop()
        if self._offline_since is not None:
            self.reconnects += 1
            log_event(
                logging.WARNING,
                "backend_reconnected",
                outage=f"{loop.time() - self._offline_since:.2f}s",
                buffered=self.buffered(),
            )
            # Others may reconnect a little later: do not take them for dead yet.
            self._settled_at = loop.time() + self.settings.worker_ttl
            self._drop_idle_connections()
        self._offline_since = None
        self.online.set()

    def _drop_idle_connections(self) -> None:
        """Close the command pool's idle connections when Redis went away or came back.

        They were opened to the server that went away: the next command on one
        would fail once more (redis-py does not always see the close first) and
        report an outage that is over. The lanes replace their own connection
        on the first failure; the pool makes new ones on demand.
        """
        client = self.client
        if client is None:
            return
        task = asyncio.get_running_loop().create_task(_disconnect_idle(client))
        self._closing_idle.add(task)
        task.add_done_callback(self._closing_idle.discard)

    async def aclose(self) -> None:
        for lane in (self.lane, self.read_lane):
            if lane is not None:
                await lane.aclose()
        for client in (self.client, self.reader):
            if client is not None:
                with contextlib.suppress(Exception):  # closing what may be broken already
                    await client.aclose()


async def _disconnect_idle(client: aioredis.Redis) -> None:
    with contextlib.suppress(Exception):  # a pool being closed meanwhile
        await client.connection_pool.disconnect(inuse_connections=False)
