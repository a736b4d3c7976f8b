"""What keeps Redis cheap: grouped bus entries, and pushes handed to a parked poll.

Without a server: which writes of a batch share one stream entry, what a group
entry holds, which result each write gets, and how a reader dispatches a
group (in order, each entry once, its own groups unread). With a server: a
burst of pushes is one stream entry that another worker delivers in order; a
push to a session whose poll is parked on the pushing worker goes to that
poll (in order, one message in flight), and back to the queue if the poll has
gone.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from bullet_py import Options
from bullet_py.backends.base import Envelope, Kind, Taken
from bullet_py.backends.redis import RedisBackend
from bullet_py.backends.redis.bus import BusReader
from bullet_py.backends.redis.link import BIG_ENTRY, Link, Settings
from bullet_py.backends.redis.scripts import Call
from bullet_py.backends.redis.writer import (
    GROUP_MAX,
    _Write,
    group_fields,
    plan,
    spread,
)
from tests.backends.conftest import RedisServer


def entry(n: int, message: str = "m", kind: str = "broadcast") -> _Write:
    fields = {"k": kind, "m": message, "o": "me", "n": str(n)}
    return _Write(None, fields, sum(len(k) + len(v) for k, v in fields.items()))


def script() -> _Write:
    return _Write(Call("ack", ("f", "bus"), ("t", "p", 10)), None, 4)


def test_consecutive_small_entries_share_one_command_and_scripts_stay_in_place() -> None:
    batch = [entry(1), entry(2), entry(3), script(), entry(4), script(), entry(5), entry(6)]
    assert plan(batch) == [(0, 3), (3, 4), (4, 5), (5, 6), (6, 8)]


def test_large_entries_and_forwarded_posts_are_never_grouped() -> None:
    big = entry(2, "x" * BIG_ENTRY)
    fwd = entry(4, kind="fwd")
    batch = [entry(1), big, entry(3), fwd, entry(5)]
    assert plan(batch) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]


def test_a_group_stops_at_its_size_bound() -> None:
    text = "y" * (BIG_ENTRY - 20)
    batch = [entry(n, text) for n in range(1, 400)]
    runs = plan(batch)
    assert len(runs) > 1
    assert [i for run in runs for i in range(*run)] == list(range(len(batch)))  # all, in order
    for start, end in runs:
        assert sum(w.size for w in batch[start:end]) <= GROUP_MAX


def test_a_group_entry_holds_every_entry_in_order_with_its_own_number() -> None:
    fields = group_fields("me", [entry(7, "a\ud800é"), entry(8, "b")])
    assert fields["k"] == "many"
    assert fields["o"] == "me"
    assert fields["n"] == "8"
    assert json.loads(fields["e"]) == [
        {"k": "broadcast", "m": "a\ud800é", "n": "7"},
        {"k": "broadcast", "m": "b", "n": "8"},
    ]


def test_a_groups_reply_goes_to_its_first_write_and_an_error_to_every_write() -> None:
    trimmed = ["5-0", 3, 100, 0]
    failure = redis_errors.ConnectionError("gone")
    results = spread([(0, 3), (3, 4), (4, 6)], [trimmed, 1, failure])
    assert results == [trimmed, "5-0", "5-0", 1, failure, failure]


def reader(me: str = "reader") -> tuple[BusReader, list[Envelope]]:
    settings = Settings(
        url="redis://127.0.0.1:1/0",
        prefix="p",
        session_ttl=60.0,
        worker_ttl=15.0,
        heartbeat=4.0,
        forward_timeout=30.0,
        buffer_max_writes=10,
        buffer_max_bytes=1000,
        reconnect_min=0.05,
        reconnect_max=1.0,
        socket_timeout=5.0,
        bus_maxlen=1000,
        bus_max_bytes=10_000,
        bus_max_age=None,
        pool_size=1,
        write_only=False,
    )
    got: list[Envelope] = []
    bus = BusReader(Link(settings, me), asyncio.Event(), listener=None)  # type: ignore[arg-type]
    bus.deliver = got.append
    return bus, got


def test_a_reader_delivers_a_groups_entries_in_order_once() -> None:
    bus, got = reader()
    first = group_fields("w1", [entry(1, "a"), entry(2, "b")])
    bus.dispatch(first)
    bus.dispatch(first)  # a group written again after an unclear failure
    bus.dispatch(group_fields("w1", [entry(2, "b"), entry(3, "c")]))  # regrouped on replay
    assert [(e.message, e.origin, e.kind) for e in got] == [
        ("a", "w1", Kind.BROADCAST),
        ("b", "w1", Kind.BROADCAST),
        ("c", "w1", Kind.BROADCAST),
    ]


def test_a_reader_skips_its_own_groups() -> None:
    bus, got = reader(me="w1")
    bus.dispatch(group_fields("w1", [entry(1, "a"), entry(2, "b")]))
    assert got == []


def test_a_bad_entry_in_a_group_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, got = reader()
    bad = {"k": "info", "s": "x", "i": "{not json", "n": "1"}
    fields = {
        "k": "many",
        "o": "w1",
        "n": "2",
        "e": json.dumps([bad, {"k": "broadcast", "m": "ok", "n": "2"}]),
    }
    bus.dispatch(fields)
    assert [e.message for e in got] == ["ok"]
    assert "bus entry could not be handled" in caplog.text


@pytest.mark.redis
async def test_a_burst_of_pushes_is_one_stream_entry_another_worker_reads_in_order(
    redis_server: RedisServer,
) -> None:
    prefix = "batching"
    got: list[Envelope] = []
    arrived = asyncio.Event()

    def deliver(envelope: Envelope) -> None:
        got.append(envelope)
        if len(got) == 200:
            arrived.set()

    def ignore(_: Envelope) -> None:
        pass

    pusher = RedisBackend(redis_server.url, prefix=prefix)
    other = RedisBackend(redis_server.url, prefix=prefix)
    client: Any = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await pusher.start(ignore)
        await other.start(deliver)
        for i in range(200):  # no await yields to the writer: one batch
            await pusher.publish(Envelope(Kind.BROADCAST, f"m{i}", origin=pusher.worker_id))
        async with asyncio.timeout(10):
            await arrived.wait()
        assert [e.message for e in got] == [f"m{i}" for i in range(200)]
        assert await client.xlen(f"{prefix}:bus") == 1
    finally:
        await pusher.close()
        await other.close()
        await client.aclose()


class _Sessions:
    """The hub's side of a store, for a backend used on its own."""

    async def handle_forwarded(self, session_id: str, message: str) -> tuple[bool, str | None]:
        return False, None

    def queue_overflowed(self, session_id: str) -> None:
        raise AssertionError("no queue here is full")


async def _home(server: RedisServer, prefix: str, sid: str) -> RedisBackend:
    """A started backend that is the home of polling session ``sid``."""
    backend = RedisBackend(server.url, prefix=prefix)
    backend.bind(_Sessions(), Options())
    await backend.start(lambda _: None)
    backend.adopt(sid, queued=True)
    return backend


async def _drained(backend: RedisBackend) -> None:
    async with asyncio.timeout(10):
        while backend.buffered:  # noqa: ASYNC110 - the writer's queue, no event per write
            await asyncio.sleep(0.01)


SID = "S" * 22


@pytest.mark.redis
async def test_a_push_goes_to_the_parked_poll_then_the_queue_keeps_the_order(
    redis_server: RedisServer,
) -> None:
    prefix = "handed"
    backend = await _home(redis_server, prefix, SID)
    client: Any = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        poll = asyncio.ensure_future(backend.take(SID, 10.0, lambda: True))
        async with asyncio.timeout(10):
            while not await client.zcard(f"{prefix}:k:{SID}"):  # noqa: ASYNC110 - Redis state
                await asyncio.sleep(0.01)
        for text in ("one", "two", "three"):
            assert backend.push(SID, text)
        async with asyncio.timeout(10):
            taken = await poll
        assert taken is not None
        assert taken.message == "one"
        # Handed, not queued: held for that poll, the others queued behind it.
        assert await client.hget(f"{prefix}:s:{SID}", "fly") == taken.token
        assert await client.lrange(f"{prefix}:q:{SID}", 0, -1) == ["two", "three"]
        backend.ack(taken)
        got = []
        for _ in range(2):
            following = await backend.take(SID, 5.0, lambda: True)
            assert following is not None
            got.append(following.message)
            backend.ack(following)
        assert got == ["two", "three"]
        await _drained(backend)
        assert await client.hlen(f"{prefix}:f:{backend.worker_id}") == 0
    finally:
        await backend.close()
        await client.aclose()


@pytest.mark.redis
async def test_a_message_handed_to_a_poll_that_left_goes_back_to_the_queue(
    redis_server: RedisServer,
) -> None:
    prefix = "left"
    backend = await _home(redis_server, prefix, SID)
    client: Any = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await _drained(backend)
        # A poll of this worker parked in Redis whose answer it no longer waits for
        # (it left between the push being queued and the push's outcome).
        gone = f"{backend.worker_id}:999"
        await client.zadd(f"{prefix}:k:{SID}", {gone: 10**13})
        assert backend.push(SID, "kept")
        await _drained(backend)
        async with asyncio.timeout(10):
            while await client.hget(f"{prefix}:s:{SID}", "fly"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert await client.lrange(f"{prefix}:q:{SID}", 0, -1) == ["kept"]
        assert await client.hlen(f"{prefix}:f:{backend.worker_id}") == 0
        taken = await backend.take(SID, 5.0, lambda: True)
        assert isinstance(taken, Taken)
        assert taken.message == "kept"
        backend.ack(taken)
    finally:
        await backend.close()
        await client.aclose()


@pytest.mark.redis
async def test_a_wake_entry_is_written_only_for_polls_parked_on_other_workers(
    redis_server: RedisServer,
) -> None:
    """The pushing worker wakes its own parked polls itself: the bus carries no wake for them."""
    prefix = "wakes"
    home = await _home(redis_server, prefix, SID)
    other = RedisBackend(redis_server.url, prefix=prefix)
    other.bind(_Sessions(), Options())
    await other.start(lambda _: None)
    client: Any = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    bus, parked = f"{prefix}:bus", f"{prefix}:k:{SID}"

    async def parked_count(count: int) -> None:
        async with asyncio.timeout(10):
            while await client.zcard(parked) != count:  # noqa: ASYNC110 - Redis state
                await asyncio.sleep(0.01)

    polls: list[asyncio.Future[Taken | None]] = []
    try:
        assert home.push(SID, "m1")
        first = await home.take(SID, 5.0, lambda: True)
        assert first is not None  # held: the next polls park behind it
        await _drained(home)
        polls.append(asyncio.ensure_future(home.take(SID, 10.0, lambda: True)))
        await parked_count(1)
        before = await client.xlen(bus)
        assert home.push(SID, "m2")  # queued (m1 is in flight); the only parked poll is here
        await _drained(home)
        assert await client.xlen(bus) == before
        polls.append(asyncio.ensure_future(other.take(SID, 10.0, lambda: True)))
        await parked_count(2)
        assert home.push(SID, "m3")  # a poll of the other worker is parked too
        await _drained(home)
        assert await client.xlen(bus) == before + 1
        assert (await client.xrevrange(bus, count=1))[0][1]["k"] == "wake"
        home.ack(first)
        got = []
        pending = set(polls)
        async with asyncio.timeout(10):
            while pending:  # one message in flight at a time: each answer acknowledged
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for poll in done:
                    taken = poll.result()
                    assert taken is not None
                    got.append(taken.message)
                    (home if taken.token.startswith(home.worker_id) else other).ack(taken)
        assert got == ["m2", "m3"]
    finally:
        for poll in polls:
            poll.cancel()
        await home.close()
        await other.close()
        await client.aclose()
