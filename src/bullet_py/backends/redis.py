"""Several worker processes (and hosts) serving one endpoint, through Redis.

``pip install bullet_py[redis]``; this is the only module that imports
``redis`` (its asyncio client). Pass one :class:`RedisBackend` per endpoint
to ``setup(app, path, handler, broker=RedisBackend(url))``; handler code is the
same as with the in-memory default. docs/cluster.md tells the whole story;
in short:

- **One bus.** Every push that may concern another worker (to a session, a
  group, everyone; an ``on_info`` payload), every POST forwarded to a
  session's home and its reply, is appended to one Redis stream that every
  worker reads from its own position. A stream rather than pub/sub: a worker
  whose connection drops resumes where it stopped instead of missing what was
  published meanwhile. Entries carry their publisher's id and sequence
  number, so a retried write is seen once, and one publisher's entries are
  read in the order it wrote them.
- **Polling without sticky sessions.** Pending ids, each session's home
  worker and each polling session's queue (a list) are kept in Redis, so a
  ``GET`` landing on any worker takes the next message, and a ``POST``
  landing elsewhere than the home is forwarded to it over the bus.
  The handler keeps running in one process (its state is Python objects);
  only its home pushes into its queue, so the queue keeps the order of pushes.
- **A poll waits without a connection of its own.** Taking is one script:
  pop a message, or record the poll as parked. Pushing to a queue with a poll
  parked appends a "wake" entry to the bus; the workers holding polls for
  that session try again. 5,000 parked polls cost 5,000 small sorted-set
  members, not 5,000 connections.
- **A taken message is held, not lost.** Until the poll's answer is written
  the message waits in the taking worker's "in flight" hash; a write that
  fails puts it back at the head of its queue, and the in-flight messages of
  a worker that died are put back by the others.
- **Outages.** Every write goes through one ordered, retried, idempotent
  buffer (bounded in operations and bytes). While Redis is unreachable,
  writes wait there and are flushed in order on reconnect (with backoff);
  when the buffer is full, a push raises :class:`~bullet_py.BackendError`
  (``hub`` methods) or returns False (``Connection.send``), and is logged.
  Reads (a poll, locating a session) fail over to "no message" (204) or 503.
- **Dead workers.** Each worker refreshes its entry in a sorted set; one
  silent for ``worker_ttl`` is dead: its sessions are forgotten when next
  looked up (the client gets a new session), its in-flight messages requeued.

Keys, with ``P`` the prefix (``bullet``)::

    P:bus           stream of entries (field k: send broadcast info fwd rep wake gone)
    P:workers       sorted set: worker id -> expiry time (ms, Redis clock)
    P:pending       sorted set: pending session id -> expiry time
    P:s:<sid>       hash: home, queued (1/0), seen (ms), wseq (last push applied), qb (bytes)
    P:q:<sid>       list: the session's queued messages (polling sessions)
    P:k:<sid>       sorted set: parked poll token -> expiry time
    P:f:<worker>    hash: token -> "<sid>\\n<message>" taken by a poll, not yet answered

Scripts read Redis's own clock (``TIME``), so hosts need no synchronised
clocks. Redis Cluster is not supported (the scripts touch several keys).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import random
import secrets
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from typing import Any

try:
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "bullet_py.backends.redis needs the 'redis' package: pip install 'bullet_py[redis]'"
    ) from exc

from ..config import Options, Overflow
from ..exceptions import BackendError, SessionNotFound
from ..logs import log_event, session_hash
from .base import (
    Broker,
    Deliver,
    Envelope,
    Kind,
    LocalSessions,
    Located,
    Placement,
    SessionStore,
    Taken,
)

logger = logging.getLogger("bullet_py")

__all__ = ["RedisBackend"]

#: Errors after which the same request may succeed later: retry, never crash.
_TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError (restarting)
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica being promoted
    redis_errors.MasterDownError,
    redis_errors.TryAgainError,
    redis_errors.OutOfMemoryError,
    OSError,
    TimeoutError,
)

_BATCH = 512  # writes sent in one round trip
_READ_COUNT = 512  # bus entries read in one round trip
_CLAIM_WAIT = 5.0  # a forwarded message may arrive before the claiming request adopted


# --- scripts ----------------------------------------------------------------
#
# Every script that writes is idempotent, because the writer retries a batch
# whose outcome it could not see: replaying one must change nothing.

_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function wake(parked, bus, maxlen, sid, now)
  if redis.call('ZCOUNT', parked, now, '+inf') > 0 then
    redis.call('XADD', bus, 'MAXLEN', '~', maxlen, '*', 'k', 'wake', 's', sid)
  end
end
local function dead(workers, who, now, trust)
  if trust ~= '1' then return false end
  local until_ms = redis.call('ZSCORE', workers, who)
  return (not until_ms) or tonumber(until_ms) < now
end
"""

# KEYS: pending. ARGV: sid, ttl_ms, limit.
_ISSUE = """
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3]) + 1
if extra > 0 then redis.call('ZPOPMIN', KEYS[1], extra) end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""

# KEYS: pending, s, q, k, workers. ARGV: sid, me, session_ttl_ms, trust.
_LOCATE = """
local now = now_ms()
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expires then
  redis.call('ZREM', KEYS[1], ARGV[1])
  if tonumber(expires) > now then
    redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
    redis.call('HSET', KEYS[2], 'home', ARGV[2], 'queued', '1', 'seen', now, 'wseq', 0, 'qb', 0)
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
    return {'claimed', ARGV[2], '1'}
  end
end
local home = redis.call('HGET', KEYS[2], 'home')
if not home then return {'unknown', '', '0'} end
if home == ARGV[2] then return {'here', home, '1'} end
if dead(KEYS[5], home, now, ARGV[4]) then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  return {'unknown', '', '0'}
end
redis.call('HSET', KEYS[2], 'seen', now)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {'elsewhere', home, redis.call('HGET', KEYS[2], 'queued') or '1'}
"""

# KEYS: s, q. ARGV: me, queued, session_ttl_ms.
_ANNOUNCE = """
local now = now_ms()
redis.call('HSET', KEYS[1], 'home', ARGV[1], 'queued', ARGV[2])
redis.call('HSETNX', KEYS[1], 'seen', now)
redis.call('HSETNX', KEYS[1], 'wseq', 0)
redis.call('HSETNX', KEYS[1], 'qb', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: s, q, k, bus.
# ARGV: message, seq, max_messages, max_bytes, drop_oldest, session_ttl_ms, me, maxlen, sid.
_PUSH = """
local now = now_ms()
local seq = tonumber(ARGV[2])
if tonumber(redis.call('HGET', KEYS[1], 'wseq') or '0') >= seq then return {'dup', 0} end
redis.call('HSET', KEYS[1], 'home', ARGV[7], 'queued', '1', 'wseq', seq)
redis.call('HSETNX', KEYS[1], 'seen', now)
local size = string.len(ARGV[1])
local n = redis.call('LLEN', KEYS[2])
local b = 0
if n > 0 then b = tonumber(redis.call('HGET', KEYS[1], 'qb') or '0') end
local maxn = tonumber(ARGV[3])
local maxb = tonumber(ARGV[4])
local dropped = 0
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if n + 1 > maxn or b + size > maxb then
  if ARGV[5] ~= '1' or size > maxb then return {'refused', 1} end
  while n > 0 and (n + 1 > maxn or b + size > maxb) do
    b = b - string.len(redis.call('LPOP', KEYS[2]))
    n = n - 1
    dropped = dropped + 1
  end
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'qb', b + size)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
wake(KEYS[3], KEYS[4], ARGV[8], ARGV[9], now)
if dropped > 0 then return {'dropped', dropped} end
return {'ok', 0}
"""

# One message of a session is in flight at a time (field ``fly`` of its hash
# names the poll holding it), so that a poll dying with a message in hand
# cannot let a later message overtake it: the next poll waits, or takes that
# very message over once the holder's worker is known dead.
#
# KEYS: s, q, k, f, workers.
# ARGV: sid, token, me, park_ms, session_ttl_ms, trust, prefix, homed_here.
_TAKE = """
local held = redis.call('HGET', KEYS[4], ARGV[2])
if held then return {'msg', string.sub(held, string.len(ARGV[1]) + 2)} end
local now = now_ms()
local home = redis.call('HGET', KEYS[1], 'home')
if not home and ARGV[8] == '1' then
  -- Redis lost it (restarted empty) but the session lives here: say so again.
  redis.call('HSET', KEYS[1], 'home', ARGV[3], 'queued', '1', 'seen', now)
  home = ARGV[3]
end
if not home then return {'gone', ''} end
if home ~= ARGV[3] and dead(KEYS[5], home, now, ARGV[6]) then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  return {'gone', ''}
end
redis.call('HSET', KEYS[1], 'seen', now)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local holder = redis.call('HGET', KEYS[1], 'fly')
if holder and holder ~= ARGV[2] then
  local w = string.match(holder, '^(.+):%d+$') or ''
  local fk = ARGV[7] .. ':f:' .. w
  local theirs = redis.call('HGET', fk, holder)
  if not theirs then
    redis.call('HDEL', KEYS[1], 'fly')
  elseif not dead(KEYS[5], w, now, ARGV[6]) then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[2])
    redis.call('PEXPIRE', KEYS[3], ARGV[5])
    return {'parked', ''}
  else
    redis.call('HDEL', fk, holder)
    redis.call('HSET', KEYS[4], ARGV[2], theirs)
    redis.call('PEXPIRE', KEYS[4], ARGV[5])
    redis.call('HSET', KEYS[1], 'fly', ARGV[2])
    redis.call('ZREM', KEYS[3], ARGV[2])
    return {'msg', string.sub(theirs, string.len(ARGV[1]) + 2)}
  end
end
local m = redis.call('LPOP', KEYS[2])
if m then
  redis.call('HINCRBY', KEYS[1], 'qb', -string.len(m))
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[1] .. '\\n' .. m)
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
  redis.call('HSET', KEYS[1], 'fly', ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return {'msg', m}
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return {'parked', ''}
"""

# KEYS: k, s. ARGV: token.
_UNPARK = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'seen', now_ms()) end
return 1
"""

_REQUEUE_ONE = """
local function requeue(prefix, bus, maxlen, ttl, token, held, now)
  local i = string.find(held, '\\n', 1, true)
  local sid = string.sub(held, 1, i - 1)
  local m = string.sub(held, i + 1)
  local s = prefix .. ':s:' .. sid
  if redis.call('EXISTS', s) == 0 then return 0 end
  local q = prefix .. ':q:' .. sid
  redis.call('LPUSH', q, m)
  redis.call('HINCRBY', s, 'qb', string.len(m))
  redis.call('PEXPIRE', q, ttl)
  if redis.call('HGET', s, 'fly') == token then redis.call('HDEL', s, 'fly') end
  wake(prefix .. ':k:' .. sid, bus, maxlen, sid, now)
  return 1
end
"""

# KEYS: f, bus. ARGV: token, prefix, maxlen, session_ttl_ms.
_REQUEUE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return requeue(ARGV[2], KEYS[2], ARGV[3], ARGV[4], ARGV[1], held, now_ms())
"""

# KEYS: f, bus. ARGV: token, prefix, maxlen.
_ACK = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local sid = string.sub(held, 1, string.find(held, '\\n', 1, true) - 1)
local s = ARGV[2] .. ':s:' .. sid
if redis.call('HGET', s, 'fly') == ARGV[1] then
  redis.call('HDEL', s, 'fly')
  if redis.call('LLEN', ARGV[2] .. ':q:' .. sid) > 0 then
    wake(ARGV[2] .. ':k:' .. sid, KEYS[2], ARGV[3], sid, now_ms())
  end
end
return 1
"""

# KEYS: s, q, k, bus. ARGV: sid, maxlen.
_FORGET = """
local n = redis.call('LLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', 'k', 'gone', 's', ARGV[1])
return n
"""

# KEYS: workers. ARGV: me, until (ms from now; 0 marks this worker dead now).
_BEAT = """
local now = now_ms()
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now
"""

# KEYS: workers, bus. ARGV: prefix, maxlen, session_ttl_ms, only (a worker id, or '').
_REAP = """
local now = now_ms()
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if ARGV[4] ~= '' then gone = {ARGV[4]} end
local moved = 0
for _, w in ipairs(gone) do
  local fly = ARGV[1] .. ':f:' .. w
  local items = redis.call('HGETALL', fly)
  local held = {}
  for i = 1, #items, 2 do
    local n = tonumber(string.match(items[i], ':(%d+)$')) or 0
    table.insert(held, {n, items[i], items[i + 1]})
  end
  table.sort(held, function(a, b) return a[1] > b[1] end)
  for _, e in ipairs(held) do
    moved = moved + requeue(ARGV[1], KEYS[2], ARGV[2], ARGV[3], e[2], e[3], now)
  end
  redis.call('DEL', fly)
  redis.call('ZREM', KEYS[1], w)
end
return moved
"""

# KEYS: s1..sn, k1..kn. ARGV: n.
_IDLE = """
local now = now_ms()
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local seen = redis.call('HGET', KEYS[i], 'seen')
  if not seen then out[i] = -1
  elseif redis.call('ZCOUNT', KEYS[n + i], now, '+inf') > 0 then out[i] = 0
  else out[i] = math.max(0, now - tonumber(seen)) end
end
return out
"""

_SCRIPTS = {
    "issue": _LIB + _ISSUE,
    "locate": _LIB + _LOCATE,
    "announce": _LIB + _ANNOUNCE,
    "push": _LIB + _PUSH,
    "take": _LIB + _TAKE,
    "unpark": _LIB + _UNPARK,
    "requeue": _LIB + _REQUEUE_ONE + _REQUEUE,
    "ack": _LIB + _ACK,
    "forget": _LIB + _FORGET,
    "beat": _LIB + _BEAT,
    "reap": _LIB + _REQUEUE_ONE + _REAP,
    "idle": _LIB + _IDLE,
}


# --- the ordered write buffer -------------------------------------------------


@dataclass(slots=True)
class _Write:
    """One buffered write: a script call or a stream append, retried until done."""

    script: str | None  # None: XADD ``fields`` to the bus
    keys: tuple[str, ...] = ()
    args: tuple[str | int, ...] = ()
    fields: dict[str, str] | None = None
    size: int = 0
    done: Callable[[Any], None] | None = None


class _Backoff:
    """Exponential delays with jitter, from ``low`` to ``high`` seconds."""

    def __init__(self, low: float, high: float) -> None:
        self.low = low
        self.high = high
        self.failures = 0

    def next(self) -> float:
        delay = min(self.high, self.low * 2.0**self.failures)
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


class _Waiter:
    """A poll of this process parked on a session's shared queue."""

    __slots__ = ("event", "released")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.released = False


# --- the backend ----------------------------------------------------------------


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
        socket_timeout: a Redis command taking longer counts as an outage.
        pool_size: connections for commands (the bus reader has its own).
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
        if heartbeat is not None and not 0 < heartbeat < worker_ttl:
            raise ValueError("heartbeat must be > 0 and < worker_ttl")
        for name, count in {
            "buffer_max_writes": buffer_max_writes,
            "buffer_max_bytes": buffer_max_bytes,
            "bus_maxlen": bus_maxlen,
            "pool_size": pool_size,
        }.items():
            if count < 1:
                raise ValueError(f"{name} must be >= 1")
        if not prefix or any(c in prefix for c in " \n"):
            raise ValueError("prefix must be a non-empty token")
        self.url = url
        self.prefix = prefix
        self.session_ttl = session_ttl
        self.worker_ttl = worker_ttl
        self.heartbeat = heartbeat if heartbeat is not None else worker_ttl / 4
        self.forward_timeout = forward_timeout
        self.buffer_max_writes = buffer_max_writes
        self.buffer_max_bytes = buffer_max_bytes
        self.reconnect_min = reconnect_min
        self.reconnect_max = max(reconnect_min, reconnect_max)
        self.socket_timeout = socket_timeout
        self.bus_maxlen = bus_maxlen
        self.pool_size = pool_size
        self.write_only = write_only
        self.worker_id = secrets.token_hex(8)

        self._options = Options()
        self._sessions: LocalSessions | None = None
        self._deliver: Deliver | None = None
        self._client: aioredis.Redis | None = None
        self._reader_client: aioredis.Redis | None = None
        self._shas: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._started = False
        self._closing = False

        self._writes: collections.deque[_Write] = collections.deque()
        self._write_bytes = 0
        self._writes_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._room = asyncio.Event()  # the buffer is under half full: reading may go on
        self._room.set()
        self._seq = itertools.count(1)  # this process's bus entries and queue pushes
        self._tokens = itertools.count(1)  # polls' take tokens
        self._seen: dict[str, int] = {}  # publisher id -> last sequence number read

        self._online = asyncio.Event()
        self._offline_since: float | None = None
        self._settled_at = 0.0  # before this, do not declare other workers dead
        self._run_id: str | None = None
        self._beat_now = asyncio.Event()
        self._announce_all = False

        self._waiters: dict[str, list[_Waiter]] = {}
        self._requests: dict[str, asyncio.Future[tuple[bool, str | None]]] = {}
        self._homed: dict[str, bool] = {}  # session id -> queued in Redis
        self._claims: dict[str, asyncio.Event] = {}  # claimed ids not yet adopted

    def __repr__(self) -> str:
        return f"<RedisBackend {self.prefix!r} worker={self.worker_id}>"

    # --- keys -------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _session_keys(self, session_id: str) -> tuple[str, str, str]:
        return (
            self._key("s", session_id),
            self._key("q", session_id),
            self._key("k", session_id),
        )

    # --- state --------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the last exchange with Redis succeeded."""
        return self._online.is_set()

    @property
    def buffered(self) -> int:
        """Writes waiting for Redis (a growing number means an outage)."""
        return len(self._writes)

    @property
    def distributed(self) -> bool:
        return True

    @property
    def store(self) -> SessionStore | None:
        return None if self.write_only else self

    def _trust(self) -> str:
        """'1' when this worker has been connected long enough to judge others dead."""
        return "1" if asyncio.get_running_loop().time() >= self._settled_at else "0"

    def _went_offline(self, exc: BaseException, during: str) -> None:
        if self._online.is_set() or self._offline_since is None:
            self._offline_since = asyncio.get_running_loop().time()
            log_event(
                logging.WARNING,
                "backend_disconnected",
                during=during,
                error=type(exc).__name__,
                detail=repr(str(exc)[:80]),
                buffered=len(self._writes),
            )
        self._online.clear()

    def _came_online(self) -> None:
        if self._online.is_set():
            return
        loop = asyncio.get_running_loop()
        if self._offline_since is not None:
            log_event(
                logging.WARNING,
                "backend_reconnected",
                outage=f"{loop.time() - self._offline_since:.2f}s",
                buffered=len(self._writes),
            )
            # Others may reconnect a little later: do not take them for dead yet.
            self._settled_at = loop.time() + self.worker_ttl
        self._offline_since = None
        self._online.set()

    # --- lifecycle ------------------------------------------------------------

    def bind(self, sessions: LocalSessions, options: Options) -> None:
        self._sessions = sessions
        self._options = options

    async def start(self, deliver: Deliver) -> None:
        if self._started:
            raise RuntimeError("a RedisBackend serves one endpoint: create one per endpoint")
        self._started = True
        self._deliver = deliver
        loop = asyncio.get_running_loop()
        self._client = self._connect(pool_size=self.pool_size, timeout=self.socket_timeout)
        self._tasks.append(loop.create_task(self._write_forever()))
        if self.write_only:
            return
        block = min(1.0, self.socket_timeout / 2)
        self._reader_client = self._connect(pool_size=1, timeout=self.socket_timeout + block)
        position: str | None = None
        try:
            await self._beat(self.worker_ttl)
            position = await self._bus_end()
            self._came_online()
        except _TRANSIENT as exc:
            self._went_offline(exc, "start")  # serve anyway; the reader keeps trying
        self._tasks.append(loop.create_task(self._read_forever(position, block)))
        self._tasks.append(loop.create_task(self._heartbeat_forever()))

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what is buffered (up to ``timeout``), leave the cluster, disconnect."""
        if not self._started or self._closing:
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The writer flushes first. The loops also stop on ``_closing``: redis-py
        # may swallow a cancellation that lands as a reply arrives.
        await _stop([*self._tasks[1:], *self._spawned])
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.released = True
                waiter.event.set()
        for future in self._requests.values():
            if not future.done():
                future.set_exception(BackendError("backend closed"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await self._drained.wait()  # the writer keeps retrying with backoff
        await _stop(self._tasks[:1])
        if self._writes:
            log_event(logging.ERROR, "backend_unflushed", writes=len(self._writes))
        if not self.write_only:
            with contextlib.suppress(*_TRANSIENT, redis_errors.RedisError):
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    await self._beat(-0.001)  # dead now: put back what our polls held
                    await self._reap(self.worker_id)
        for client in (self._client, self._reader_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _connect(self, *, pool_size: int, timeout: float) -> aioredis.Redis:
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=pool_size,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 2.0),
            decode_responses=True,
            encoding_errors="surrogatepass",  # a lone surrogate round-trips
            retry=Retry(NoBackoff(), 0),  # this module retries, knowing what is idempotent
            client_name=f"{self.prefix}:{self.worker_id}",
        )
        return aioredis.Redis.from_pool(pool)  # closing the client closes the pool

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    # --- running scripts --------------------------------------------------------

    async def _load_scripts(self, client: aioredis.Redis) -> None:
        shas = {name: str(await client.script_load(text)) for name, text in _SCRIPTS.items()}
        self._shas = shas  # all at once: a reader never sees a half-loaded table

    async def _run(self, name: str, *keys_then_args: str | int, nkeys: int = 0) -> Any:
        """Run a script now (not through the write buffer); loads scripts when Redis lost them."""
        client = self._require_client()
        if not nkeys:
            nkeys = _NKEYS[name]
        for attempt in range(2):
            if name not in self._shas:
                await self._load_scripts(client)
            try:
                return await client.evalsha(self._shas[name], nkeys, *keys_then_args)
            except redis_errors.NoScriptError:
                if attempt:
                    raise
                self._shas.clear()
        raise AssertionError("unreachable")  # pragma: no cover

    def _require_client(self) -> aioredis.Redis:
        if self._client is None:
            raise BackendError("the backend is not started")
        return self._client

    # --- the write buffer ---------------------------------------------------------

    def _buffer(self, write: _Write) -> bool:
        """Queue a write in order; False when the buffer is full (caller reports it)."""
        if self._closing or self._client is None:
            return False
        if (
            len(self._writes) >= self.buffer_max_writes
            or self._write_bytes + write.size > self.buffer_max_bytes
        ):
            log_event(
                logging.ERROR,
                "backend_buffer_full",
                buffered=len(self._writes),
                bytes=self._write_bytes,
            )
            return False
        self._writes.append(write)
        self._write_bytes += write.size
        self._writes_ready.set()
        self._drained.clear()
        if not self._under_half():
            self._room.clear()
        return True

    def _under_half(self) -> bool:
        return (
            len(self._writes) <= self.buffer_max_writes // 2
            and self._write_bytes <= self.buffer_max_bytes // 2
        )

    async def _write_forever(self) -> None:
        backoff = _Backoff(self.reconnect_min, self.reconnect_max)
        while True:  # stopped by close(), once flushed or out of time
            while not self._writes:
                self._drained.set()
                self._writes_ready.clear()
                await self._writes_ready.wait()
            batch = list(itertools.islice(self._writes, _BATCH))
            try:
                results = await self._execute(batch)
            except _TRANSIENT as exc:
                self._went_offline(exc, "write")
                await asyncio.sleep(backoff.next())
                continue
            except Exception:  # a bug must not stop the writer: log, retry later
                logger.exception("redis writes failed")
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            self._came_online()
            retry = False
            for write, result in zip(batch, results, strict=True):
                if isinstance(result, redis_errors.NoScriptError):
                    self._shas.clear()  # Redis restarted: load again, replay from here
                    retry = True
                    break
                if isinstance(result, _TRANSIENT) or _busy(result):
                    self._went_offline(result, "write")
                    retry = True
                    break
                self._writes.popleft()
                self._write_bytes -= write.size
                if not self._room.is_set() and self._under_half():
                    self._room.set()
                if isinstance(result, Exception):
                    logger.error("redis write %s failed: %r", write.script or "xadd", result)
                    continue
                if write.done is not None:
                    try:
                        write.done(result)
                    except Exception:
                        logger.exception("redis write callback failed")
            if retry:
                await asyncio.sleep(backoff.next())

    async def _execute(self, batch: list[_Write]) -> list[Any]:
        client = self._require_client()
        if any(w.script is not None and w.script not in self._shas for w in batch):
            await self._load_scripts(client)
        async with client.pipeline(transaction=False) as pipe:
            for write in batch:
                if write.script is None:
                    assert write.fields is not None
                    pipe.xadd(
                        self._key("bus"),
                        write.fields,  # type: ignore[arg-type]
                        maxlen=self.bus_maxlen,
                        approximate=True,
                    )
                else:
                    pipe.evalsha(
                        self._shas[write.script], len(write.keys), *write.keys, *write.args
                    )
            return list(await pipe.execute(raise_on_error=False))

    def _publish_fields(self, fields: dict[str, str]) -> bool:
        fields["o"] = self.worker_id
        fields["n"] = str(next(self._seq))
        size = sum(len(k) + len(v) for k, v in fields.items())
        return self._buffer(_Write(None, fields=fields, size=size))

    # --- Broker ---------------------------------------------------------------------

    async def publish(self, envelope: Envelope) -> None:
        """Append ``envelope`` to the bus, after everything this process wrote before.

        Raises:
            BackendError: Redis is unreachable and the local buffer is full.
            TypeError: an ``info`` payload JSON cannot carry.
        """
        fields = {"k": envelope.kind.value, "m": envelope.message}
        if envelope.session_id is not None:
            fields["s"] = envelope.session_id
        if envelope.group is not None:
            fields["g"] = envelope.group
        if envelope.exclude is not None:
            fields["x"] = envelope.exclude
        if envelope.kind is Kind.INFO:
            try:
                fields["i"] = json.dumps(envelope.info)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"info payloads cross processes as JSON: {exc}") from None
        if not self._publish_fields(fields):
            raise BackendError("Redis unreachable and the local buffer is full; push not sent")

    # --- reading the bus -----------------------------------------------------------

    async def _bus_end(self) -> str:
        client = self._require_client()
        last = await client.xrevrange(self._key("bus"), count=1)
        return str(last[0][0]) if last else "0-0"

    async def _read_forever(self, position: str | None, block: float) -> None:
        assert self._reader_client is not None
        backoff = _Backoff(self.reconnect_min, self.reconnect_max)
        fresh = True  # check the server after every (re)connection
        bus = self._key("bus")
        while not self._closing:
            try:
                if position is None:
                    position = await self._bus_end()
                    fresh = False
                if fresh:
                    await self._check_server(position)
                    fresh = False
                reply: Any = await self._reader_client.xread(
                    {bus: position}, count=_READ_COUNT, block=int(block * 1000)
                )
            except _TRANSIENT as exc:
                self._went_offline(exc, "read")
                fresh = True
                await asyncio.sleep(backoff.next())
                continue
            except Exception:  # a bug must not stop the reader: log, retry later
                logger.exception("reading the bus failed")
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            self._came_online()
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    # Back-pressure: an entry may make many writes (a broadcast to
                    # many polling sessions here); while the buffer is over half
                    # full, the entries wait in the stream rather than be refused.
                    await self._room.wait()
                    position = entry_id
                    try:
                        self._dispatch(fields)
                    except Exception:
                        logger.exception("bus entry could not be handled")

    async def _check_server(self, position: str) -> None:
        """After a reconnection: did Redis restart, did the bus drop entries we had not read?"""
        assert self._reader_client is not None
        info = await self._reader_client.info("server")
        run_id = str(info.get("run_id", ""))
        if self._run_id is not None and run_id != self._run_id:
            log_event(logging.WARNING, "redis_restarted", note="unpersisted data is lost")
            self._shas.clear()
            self._announce_all = True
            self._beat_now.set()
        self._run_id = run_id
        with contextlib.suppress(redis_errors.ResponseError):
            stream = await self._reader_client.xinfo_stream(self._key("bus"))
            trimmed = str(stream.get("max-deleted-entry-id", "0-0"))
            if _id_after(trimmed, position):
                log_event(logging.ERROR, "bus_gap", read_from=position, trimmed_to=trimmed)

    def _dispatch(self, fields: dict[str, str]) -> None:
        origin = fields.get("o")
        if origin is not None:
            if origin == self.worker_id:
                return
            seq = int(fields.get("n", "0"))
            if seq <= self._seen.get(origin, 0):
                return  # a retried write, seen already
            self._seen[origin] = seq
        kind = fields.get("k")
        if kind == "wake":
            for waiter in self._waiters.get(fields.get("s", ""), ()):
                waiter.event.set()
        elif kind == "gone":
            self._release(fields.get("s", ""))
        elif kind == "fwd":
            if fields.get("t") == self.worker_id and origin is not None:
                self._spawn(
                    self._serve_forwarded(
                        origin, fields.get("r", ""), fields.get("s", ""), fields.get("m", "")
                    )
                )
        elif kind == "rep":
            if fields.get("t") == self.worker_id:
                self._replied(fields)
        elif kind in _ENVELOPE_KINDS and self._deliver is not None:
            info = fields.get("i")
            self._deliver(
                Envelope(
                    Kind(kind),
                    fields.get("m", ""),
                    session_id=fields.get("s"),
                    group=fields.get("g"),
                    exclude=fields.get("x"),
                    info=json.loads(info) if info is not None else None,
                    origin=origin or "",
                )
            )

    # --- heartbeat --------------------------------------------------------------------

    async def _beat(self, ttl: float) -> None:
        await self._run("beat", self._key("workers"), self.worker_id, int(ttl * 1000))

    async def _reap(self, only: str = "") -> int:
        """Put back what the polls of dead workers (or of ``only``) held; forget them."""
        args = (self.prefix, self.bus_maxlen, int(self.session_ttl * 1000), only)
        return int(await self._run("reap", self._key("workers"), self._key("bus"), *args))

    async def _heartbeat_forever(self) -> None:
        loop = asyncio.get_running_loop()
        refresh_every = self.session_ttl / 3
        next_refresh = loop.time() + refresh_every
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat):
                    await self._beat_now.wait()
            self._beat_now.clear()
            try:
                await self._beat(self.worker_ttl)
                if self._trust() == "1":
                    moved = await self._reap()
                    if moved:
                        log_event(logging.WARNING, "dead_worker_requeued", messages=moved)
            except _TRANSIENT as exc:
                self._went_offline(exc, "heartbeat")
                continue
            except Exception:  # a bug must not stop the heartbeat: log, beat again later
                logger.exception("heartbeat failed")
                continue
            self._came_online()
            if self._announce_all or loop.time() >= next_refresh:
                self._announce_all = False
                next_refresh = loop.time() + refresh_every
                for session_id, queued in list(self._homed.items()):
                    self._announce(session_id, queued)

    def _announce(self, session_id: str, queued: bool) -> None:
        s, q, _ = self._session_keys(session_id)
        args = (self.worker_id, "1" if queued else "0", int(self.session_ttl * 1000))
        self._buffer(_Write("announce", (s, q), args, size=len(session_id)))

    # --- SessionStore: pending ids and homes --------------------------------------------

    async def issue_pending(self, session_id: str) -> None:
        opts = self._options
        try:
            await self._run(
                "issue",
                self._key("pending"),
                session_id,
                int(opts.pending_session_ttl * 1000),
                opts.max_pending_sessions,
            )
        except _TRANSIENT as exc:
            self._went_offline(exc, "issue_pending")
            raise BackendError("Redis unreachable") from exc

    async def locate(self, session_id: str) -> Located:
        if not _plausible(session_id):
            return Located(Placement.UNKNOWN)  # not one of ours: no need to ask Redis
        s, q, k = self._session_keys(session_id)
        if session_id in self._homed:
            return Located(Placement.HERE, self.worker_id)
        try:
            placement, home, queued = await self._run(
                "locate",
                self._key("pending"),
                s,
                q,
                k,
                self._key("workers"),
                session_id,
                self.worker_id,
                int(self.session_ttl * 1000),
                self._trust(),
            )
        except _TRANSIENT as exc:
            self._went_offline(exc, "locate")
            raise BackendError("Redis unreachable") from exc
        if placement == "claimed":
            self._claims[session_id] = asyncio.Event()
        return Located(Placement(placement), str(home), queued == "1")

    def adopt(self, session_id: str, *, queued: bool) -> None:
        self._homed[session_id] = queued
        claim = self._claims.pop(session_id, None)
        if claim is not None:
            claim.set()
        if not queued:
            self._announce(session_id, queued)

    def forget(self, session_id: str) -> None:
        self._release(session_id)
        claim = self._claims.pop(session_id, None)
        if claim is not None:
            claim.set()
        self._homed.pop(session_id, None)
        s, q, k = self._session_keys(session_id)

        def dropped(count: Any) -> None:
            if count:
                log_event(
                    logging.WARNING,
                    "session_dropped",
                    session=session_hash(session_id),
                    queued=count,
                )

        self._buffer(
            _Write(
                "forget",
                (s, q, k, self._key("bus")),
                (session_id, self.bus_maxlen),
                size=len(session_id),
                done=dropped,
            )
        )

    async def idle_for(self, session_ids: Collection[str]) -> dict[str, float]:
        ids = list(session_ids)
        if not ids:
            return {}
        keys = [self._key("s", i) for i in ids] + [self._key("k", i) for i in ids]
        try:
            result = await self._run("idle", *keys, len(ids), nkeys=len(keys))
        except _TRANSIENT as exc:
            self._went_offline(exc, "idle_for")
            raise BackendError("Redis unreachable") from exc
        return {i: int(ms) / 1000 for i, ms in zip(ids, result, strict=True) if int(ms) >= 0}

    # --- SessionStore: the queue ----------------------------------------------------------

    def push(self, session_id: str, message: str) -> bool:
        opts = self._options
        s, q, k = self._session_keys(session_id)
        drop_oldest = opts.overflow is Overflow.DROP_OLDEST

        def outcome(result: Any) -> None:
            status, count = str(result[0]), int(result[1])
            for waiter in self._waiters.get(session_id, ()):
                waiter.event.set()  # polls parked here need not wait for the bus
            if status in ("refused", "dropped"):
                log_event(
                    logging.WARNING,
                    "queue_overflow",
                    session=session_hash(session_id),
                    transport="poll",
                    policy=opts.overflow.value,
                    dropped=count,
                )
                if self._sessions is not None:
                    self._sessions.queue_overflowed(session_id)

        write = _Write(
            "push",
            (s, q, k, self._key("bus")),
            (
                message,
                next(self._seq),
                opts.outbox_max_messages,
                opts.outbox_max_chars * 4,  # UTF-8 bytes: never stricter than in memory
                "1" if drop_oldest else "0",
                int(self.session_ttl * 1000),
                self.worker_id,
                self.bus_maxlen,
                session_id,
            ),
            size=len(message) + 64,
            done=outcome,
        )
        if self._buffer(write):
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

    async def take(
        self, session_id: str, timeout: float, alive: Callable[[], bool]
    ) -> Taken | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        token = f"{self.worker_id}:{next(self._tokens)}"
        s, q, k = self._session_keys(session_id)
        fly = self._key("f", self.worker_id)
        waiter = _Waiter()
        waiters = self._waiters.setdefault(session_id, [])
        while len(waiters) >= self._options.max_polls_per_session:
            oldest = waiters.pop(0)  # a newer poll releases the oldest, as in memory
            oldest.released = True
            oldest.event.set()
        waiters.append(waiter)
        parked = False
        taken: Taken | None = None
        backoff = _Backoff(self.reconnect_min, self.reconnect_max)
        try:
            while not waiter.released and alive():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                waiter.event.clear()
                try:
                    status, value = await self._run(
                        "take",
                        s,
                        q,
                        k,
                        fly,
                        self._key("workers"),
                        session_id,
                        token,
                        self.worker_id,
                        int((remaining + 5.0) * 1000),
                        int(self.session_ttl * 1000),
                        self._trust(),
                        self.prefix,
                        "1" if session_id in self._homed else "0",
                    )
                except _TRANSIENT as exc:
                    self._went_offline(exc, "take")
                    # Wait for the reader to reconnect, then try again with the
                    # same token: a take that did pop is answered from "in flight".
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(backoff.next(), max(0.0, remaining))):
                            await self._online.wait()
                    continue
                if status == "msg":
                    parked = False
                    taken = Taken(session_id, str(value), token)
                    return taken
                if status == "gone":
                    parked = False
                    return None
                parked = True
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - loop.time()):
                        await waiter.event.wait()
            return None
        except asyncio.CancelledError:
            if taken is None:
                self._requeue_token(token)  # a take cut short may have popped under this token
            raise
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self._waiters.get(session_id) is waiters:
                del self._waiters[session_id]
            if parked:
                self._buffer(_Write("unpark", (k, s), (token,), size=len(token)))

    def delivered(self, taken: Taken) -> None:
        fly = self._key("f", self.worker_id)

        def acked(_: Any) -> None:
            for waiter in self._waiters.get(taken.session_id, ()):
                waiter.event.set()  # a poll here waiting for this one's answer

        self._buffer(
            _Write(
                "ack",
                (fly, self._key("bus")),
                (taken.token, self.prefix, self.bus_maxlen),
                size=len(taken.token),
                done=acked,
            )
        )

    def requeue(self, taken: Taken) -> None:
        self._requeue_token(taken.token)

    def _requeue_token(self, token: str) -> None:
        fly = self._key("f", self.worker_id)
        self._buffer(
            _Write(
                "requeue",
                (fly, self._key("bus")),
                (token, self.prefix, self.bus_maxlen, int(self.session_ttl * 1000)),
                size=len(token),
            )
        )

    def release(self, session_id: str) -> None:
        self._release(session_id)

    def _release(self, session_id: str) -> None:
        for waiter in self._waiters.get(session_id, ()):
            waiter.released = True
            waiter.event.set()

    def parked(self, session_id: str) -> int:
        return len(self._waiters.get(session_id, ()))

    # --- SessionStore: POSTs landing elsewhere -----------------------------------------------

    async def forward(self, home: str, session_id: str, message: str) -> str | None:
        request_id = str(next(self._seq))
        future: asyncio.Future[tuple[bool, str | None]] = asyncio.get_running_loop().create_future()
        fields = {"k": "fwd", "t": home, "s": session_id, "r": request_id, "m": message}
        if not self._publish_fields(fields):
            raise BackendError("Redis unreachable and the local buffer is full")
        self._requests[request_id] = future
        try:
            async with asyncio.timeout(self.forward_timeout):
                found, reply = await future
        finally:
            self._requests.pop(request_id, None)
        if not found:
            raise SessionNotFound(session_hash(session_id))
        return reply

    async def _serve_forwarded(
        self, origin: str, request_id: str, session_id: str, message: str
    ) -> None:
        claim = self._claims.get(session_id)
        if claim is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLAIM_WAIT):
                    await claim.wait()
        found, reply = False, None
        if self._sessions is not None:
            try:
                found, reply = await self._sessions.handle_forwarded(session_id, message)
            except Exception:
                logger.exception("forwarded message failed")
                found = True
        fields = {
            "k": "rep",
            "t": origin,
            "r": request_id,
            "s": session_id,
            "f": "1" if found else "0",
        }
        if reply is not None:
            fields["m"] = reply
        if not self._publish_fields(fields):
            log_event(logging.ERROR, "forward_reply_dropped", session=session_hash(session_id))

    def _replied(self, fields: dict[str, str]) -> None:
        found = fields.get("f") == "1"
        reply = fields.get("m")
        future = self._requests.pop(fields.get("r", ""), None)
        if future is not None and not future.done():
            future.set_result((found, reply))
            return
        # The POST was answered 202 already: the reply reaches the client by push.
        session_id = fields.get("s")
        if found and reply and session_id:
            self._publish_fields({"k": Kind.SEND.value, "m": reply, "s": session_id})


_ENVELOPE_KINDS = frozenset(k.value for k in Kind)

#: How many of a script's leading arguments are keys (for fixed-shape scripts).
_NKEYS = {
    "issue": 1,
    "locate": 5,
    "announce": 2,
    "push": 4,
    "take": 5,
    "unpark": 2,
    "requeue": 2,
    "ack": 2,
    "forget": 4,
    "beat": 1,
    "reap": 2,
}


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


_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _plausible(session_id: str) -> bool:
    """Shaped like an id ``registry.new_session_id`` makes (URL-safe base64)."""
    return 16 <= len(session_id) <= 64 and _ID_CHARS.issuperset(session_id)


def _busy(result: Any) -> bool:
    """Redis refusing for a while (a long script, loading a dump): retry, do not drop."""
    return isinstance(result, redis_errors.ResponseError) and str(result).startswith(
        ("BUSY", "LOADING", "MASTERDOWN", "READONLY", "OOM", "TRYAGAIN")
    )


def _id_after(a: str, b: str) -> bool:
    """Whether stream id ``a`` comes after ``b``."""

    def parts(entry_id: str) -> tuple[int, int]:
        ms, _, seq = entry_id.partition("-")
        return int(ms or 0), int(seq or 0)

    return parts(a) > parts(b)
