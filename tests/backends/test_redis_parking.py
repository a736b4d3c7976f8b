"""Parked sessions in Redis, in process: the store operations behind docs/sessions.md
("Several workers"), with several backends on one Redis and no HTTP.

A worker "dies" here by its entry in ``P:workers`` expiring (the test sets it
in the past): the backend object stays alive, as a worker that only stalled
would, so what it does afterwards can be checked too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from bullet_py import Options
from bullet_py.backends.base import Envelope, Kind, Placement
from bullet_py.backends.redis import RedisBackend
from tests.backends.conftest import RedisServer
from tests.backends.test_redis import redis_factory
from tests.helpers import wait_for

pytestmark = pytest.mark.redis

SID = "p" * 32


class Sessions:
    """A bare worker's sessions: none, but what the store hands them is recorded."""

    def __init__(self) -> None:
        self.orphans: list[str] = []

    async def handle_forwarded(self, session_id: str, message: str) -> tuple[bool, str | None]:
        return False, None

    def queue_overflowed(self, session_id: str) -> None:
        pass

    def close_forwarded(self, session_id: str) -> bool:
        return False

    def adopt_orphan(self, session_id: str, entry: str) -> None:
        self.orphans.append(session_id)


Started = Callable[..., "asyncio.Future[tuple[RedisBackend, Sessions]]"]


@pytest.fixture
async def backends(redis_server: RedisServer) -> AsyncIterator[Any]:
    """Start backends on one prefix: ``await start(**settings)``; all closed at the end."""
    make = redis_factory(redis_server)
    started: list[RedisBackend] = []

    async def start(
        options: Options | None = None, **settings: Any
    ) -> tuple[RedisBackend, Sessions]:
        backend = make(**settings)
        sessions = Sessions()
        backend.bind(sessions, options or Options())
        await backend.start(lambda envelope: None)  # pushes are not applied: no hub here
        started.append(backend)
        return backend, sessions

    yield start
    for backend in started:
        await backend.close()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def flushed(*backends: RedisBackend) -> None:
    await wait_for(lambda: all(backend.buffered == 0 for backend in backends))


async def take_all(backend: RedisBackend, session_id: str) -> list[str]:
    got = []
    while (taken := await backend.take(session_id, 0.2, lambda: True)) is not None:
        got.append(taken.message)
        backend.ack(taken)
    await flushed(backend)
    return got


async def looks_dead(client: aioredis.Redis, backend: RedisBackend) -> None:
    """Its heartbeat entry expired (it beats again only after worker_ttl / 4)."""
    await client.zadd(f"{backend.prefix}:workers", {backend.worker_id: 0})


async def test_a_parked_queue_and_count_are_served_from_another_worker(backends: Any) -> None:
    home, _ = await backends()
    other, _ = await backends()
    home.adopt(SID, queued=False)  # a stream session: its queue in its process
    assert (await other.locate(SID)).parked is False
    home.park(SID, ["q1\r", "q2"], 5, ["r4", "r5"])  # sent 5, the last two kept
    await flushed(home)
    located = await other.locate(SID)
    assert located.placement is Placement.ELSEWHERE and located.home == home.worker_id
    assert located.parked and located.queued
    assert located.cr  # the head holds CR: an event stream is refused, wherever it asks
    # A counting client that received 4: the fifth again, first, then the queue.
    assert await other.rewind(SID, 4)
    assert not (await home.locate(SID)).cr
    first = await other.take(SID, 1.0, lambda: True)
    assert first is not None and first.message == "r5"
    other.ack(first)
    await flushed(other)
    held = await other.take(SID, 1.0, lambda: True)  # taken, not yet written
    assert held is not None and held.message == "q1\r"
    assert (await home.locate(SID)).cr  # its write may fail: it stays the next one
    # The client got it, and reconnects before the acknowledgement lands: its
    # count is one more than Redis knows. The message is not sent again.
    assert await other.rewind(SID, 6)
    other.ack(held)  # late: it changes nothing
    await flushed(other)
    assert await take_all(other, SID) == ["q2"]
    assert await other.rewind(SID, 7)  # 4 + the 3 taken since: nothing missed
    assert not await other.rewind(SID, 8)  # more than was sent: a gap
    assert not await other.rewind(SID, 3)  # older than what is kept: a gap


async def test_a_dead_homes_parked_session_is_taken_over_once_with_the_pushes_it_missed(
    backends: Any, redis_client: aioredis.Redis
) -> None:
    home, _ = await backends(worker_ttl=30.0)
    first, _ = await backends()
    second, _ = await backends()
    job, _ = await backends(write_only=True)
    home.adopt(SID, queued=False)
    home.park(SID, ["queued"], None, [])
    await flushed(home)
    # Pushes from another process travel on the bus to the home, which does not
    # apply them here (it has no hub): as if it had died before reading them.
    for text in ("m1", "m2"):
        await job.publish(Envelope(Kind.SEND, text, session_id=SID, origin="job"))
    await job.publish(Envelope(Kind.SEND, "other", session_id="q" * 32, origin="job"))
    await job.publish(Envelope(Kind.BROADCAST, "everyone", origin="job"))
    await flushed(job)
    await looks_dead(redis_client, home)
    answers = await asyncio.gather(first.locate(SID), second.locate(SID))
    assert sorted(a.placement.value for a in answers) == ["elsewhere", "taken"]
    winner = first if answers[0].placement is Placement.TAKEN else second
    taken = answers[0] if winner is first else answers[1]
    loser = answers[1] if winner is first else answers[0]
    assert loser.home == winner.worker_id and loser.parked
    adopted: list[str] = []
    winner.adopt(SID, queued=True)
    applied = await winner.catch_up(SID, taken.entry, lambda: adopted.append(SID))
    assert applied == 3 and adopted == [SID]
    # The old home, alive after all, pushes to it: refused, the session moved.
    assert home.push(SID, "stale")
    await flushed(home, winner)
    assert await take_all(winner, SID) == ["queued", "m1", "m2", "everyone"]
    # A second catch-up from the same point applies nothing twice.
    assert await winner.catch_up(SID, taken.entry, lambda: None) == 3
    await flushed(winner)
    assert await take_all(winner, SID) == []


async def test_a_parked_session_nobody_comes_back_for_is_adopted_by_one_worker(
    backends: Any, redis_client: aioredis.Redis
) -> None:
    options = Options(session_idle_timeout=0.5)
    home, _ = await backends(options, worker_ttl=30.0)
    survivors = [await backends(options) for _ in range(2)]
    home.adopt(SID, queued=False)
    home.park(SID, [], None, [])
    await flushed(home)
    await looks_dead(redis_client, home)
    # The survivors' heartbeats (every worker_ttl / 4) find it once it is idle.
    await wait_for(lambda: sum(len(s.orphans) for _, s in survivors) == 1, timeout=10)
    winner = next(b for b, s in survivors if s.orphans)
    assert (await home.locate(SID)).home == winner.worker_id
    assert await redis_client.smembers(f"{home.prefix}:p:{home.worker_id}") == set()
