"""What keeps Redis cheap: grouped bus entries, and pushes handed to a parked poll.

Without a server (a recording pipeline): which entries share one stream
entry as they are published, what a group entry holds, that a group in
flight takes no more entries and is sent again whole, that the buffer's bound
counts every entry, and how a reader dispatches a group (in order, each entry
once, its own groups unread). With a server: a
burst of pushes is one stream entry that another worker delivers in order; a
push to a session whose poll is parked on the pushing worker goes to that
poll (in order, one message in flight), and back to the queue if the poll has
gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from bullet_py import BackendError, Options
from bullet_py.backends.base import Envelope, Kind, Taken
from bullet_py.backends.redis import RedisBackend
from bullet_py.backends.redis.bus import BusReader
from bullet_py.backends.redis.link import BIG_ENTRY, Link, Settings
from bullet_py.backends.redis.scripts import Call
from bullet_py.backends.redis.writer import GROUP_MAX, Writer, group_fields
from tests.backends.conftest import RedisServer


def entry(n: int, message: str = "m", kind: str = "broadcast") -> dict[str, str]:
    """A bus entry as a group holds it (no ``o``)."""
    return {"k": kind, "m": message, "n": str(n)}


def group_of(origin: str, *entries: dict[str, str]) -> dict[str, str]:
    """The stream entry of a group holding ``entries`` (as the writer keeps them: JSON text)."""
    texts = [json.dumps(e, ensure_ascii=False) for e in entries]
    return group_fields(origin, texts, entries[-1]["n"])


def settings(max_writes: int = 10, max_bytes: int = 1000) -> Settings:
    return Settings(
        url="redis://127.0.0.1:1/0",
        prefix="p",
        session_ttl=60.0,
        worker_ttl=15.0,
        heartbeat=4.0,
        forward_timeout=30.0,
        buffer_max_writes=max_writes,
        buffer_max_bytes=max_bytes,
        reconnect_min=0.01,
        reconnect_max=0.02,
        socket_timeout=5.0,
        bus_maxlen=1000,
        bus_max_bytes=10_000,
        bus_max_age=None,
        pool_size=1,
        write_only=False,
    )


class _Client:
    """Stands for Redis: records the commands of each round trip, answers with ``replies``."""

    def __init__(self) -> None:
        self.sent: list[list[tuple[str, Any]]] = []  # the commands of each round trip
        self.replies: list[list[Any]] = []  # the replies of the next round trips (else ids)
        self.gate = asyncio.Event()  # a round trip's answer waits for it
        self.asked = asyncio.Event()  # a round trip was sent
        self.gate.set()


class _Lane:
    """The writer's lane, recording each command as ``("xadd", fields)`` or ``(script, args)``."""

    def __init__(self, client: _Client) -> None:
        self.client = client

    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        recorded: list[tuple[str, Any]] = []
        for command in commands:
            if command[0] == "XADD":
                assert command[2:6] == ("MAXLEN", "~", 1000, "*")
                pairs = command[6:]
                recorded.append(("xadd", dict(zip(pairs[::2], pairs[1::2], strict=True))))
            else:  # EVALSHA sha keys-count keys... args...
                assert command[0] == "EVALSHA"
                recorded.append((command[1], command[3:]))
        client = self.client
        client.sent.append(recorded)
        client.asked.set()
        await client.gate.wait()
        replies = client.replies.pop(0) if client.replies else None
        return replies if replies is not None else ["1-1"] * len(commands)


class _Scripts:
    loaded = True

    def command(self, call: Call) -> tuple[Any, ...]:
        return ("EVALSHA", call.script, len(call.keys), *call.keys, *call.args)


def connected(link: Link) -> _Client:
    """``link`` as if its backend had started, talking to a recording client."""
    client = _Client()
    link.client = client  # type: ignore[assignment]
    link.lane = _Lane(client)  # type: ignore[assignment]
    link._scripts = _Scripts()  # type: ignore[assignment]
    return client


def writer(max_writes: int = 10, max_bytes: int = 1000) -> tuple[Writer, _Client]:
    link = Link(settings(max_writes, max_bytes), "me")
    client = connected(link)
    return Writer(link), client


async def flushed(writer: Writer) -> None:
    """Run the writer until nothing waits, then stop it."""
    task = asyncio.create_task(writer.run_forever())
    try:
        async with asyncio.timeout(10):
            await writer.drained.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def ack() -> Call:
    return Call("ack", ("f", "bus"), ("t", "p", 10))


def grouped(command: tuple[str, Any]) -> list[str]:
    """The messages of one XADD, whether a group or a single entry."""
    name, fields = command
    assert name == "xadd"
    if fields["k"] == "many":
        return [e["m"] for e in json.loads(fields["e"])]
    return [fields["m"]]


async def test_consecutive_small_entries_share_one_command_and_scripts_stay_in_place() -> None:
    bus, client = writer(max_writes=100, max_bytes=100_000)
    for m in "abc":
        assert bus.publish({"k": "broadcast", "m": m})
    assert bus.call(ack(), size=4)
    assert bus.publish({"k": "broadcast", "m": "d"})
    assert bus.call(ack(), size=4)
    for m in "ef":
        assert bus.publish({"k": "broadcast", "m": m})
    assert len(bus) == 8  # every entry counts toward the bound, grouped or not
    await flushed(bus)
    (commands,) = client.sent
    assert [c[0] for c in commands] == ["xadd", "ack", "xadd", "ack", "xadd"]
    assert [grouped(c) for c in commands if c[0] == "xadd"] == [["a", "b", "c"], ["d"], ["e", "f"]]
    first = json.loads(commands[0][1]["e"])
    assert [e["n"] for e in first] == ["1", "2", "3"]  # each keeps its own number
    assert commands[0][1]["o"] == "me" and commands[0][1]["n"] == "3"
    assert commands[2][1] == {"k": "broadcast", "m": "d", "n": "4", "o": "me"}  # alone: plain
    assert len(bus) == 0


async def test_large_entries_and_forwarded_posts_are_never_grouped() -> None:
    bus, client = writer(max_writes=100, max_bytes=100_000)
    assert bus.publish({"k": "broadcast", "m": "a"})
    assert bus.publish({"k": "broadcast", "m": "x" * BIG_ENTRY})
    assert bus.publish({"k": "broadcast", "m": "b"})
    assert bus.publish({"k": "fwd", "t": "w2", "s": "s", "r": "1", "m": "c"})
    assert bus.publish({"k": "broadcast", "m": "d"})
    await flushed(bus)
    (commands,) = client.sent
    assert [c[0] for c in commands] == ["xadd", "append", "xadd", "append", "xadd"]
    assert [grouped(c) for c in commands if c[0] == "xadd"] == [["a"], ["b"], ["d"]]


async def test_a_group_stops_at_its_size_bound() -> None:
    bus, client = writer(max_writes=1000, max_bytes=10_000_000)
    text = "y" * (BIG_ENTRY - 40)
    for n in range(400):
        assert bus.publish({"k": "broadcast", "m": f"{n}:{text}"})
    await flushed(bus)
    xadds = [c for batch in client.sent for c in batch]
    assert len(xadds) > 1
    messages = [m for c in xadds for m in grouped(c)]
    assert [int(m.split(":")[0]) for m in messages] == list(range(400))  # all, in order
    for _name, fields in xadds:
        entries = json.loads(fields["e"]) if fields["k"] == "many" else [fields]
        # Each entry as published: its fields, with "o" and the publisher's id.
        sizes = [sum(len(k) + len(v) for k, v in e.items() if k != "o") + 2 + 2 for e in entries]
        assert sum(sizes) <= GROUP_MAX


async def test_a_group_entry_holds_every_entry_in_order_with_its_own_number() -> None:
    bus, client = writer(max_writes=100, max_bytes=100_000)
    assert bus.publish({"k": "broadcast", "m": 'a\ud800é"\\\n'})
    assert bus.publish({"k": "send", "m": "b", "s": "S1"})
    await flushed(bus)
    (((name, fields),),) = client.sent
    assert name == "xadd"
    assert fields["k"] == "many"
    assert fields["o"] == "me"
    assert fields["n"] == "2"
    assert json.loads(fields["e"]) == [
        {"k": "broadcast", "m": 'a\ud800é"\\\n', "n": "1"},
        {"k": "send", "m": "b", "s": "S1", "n": "2"},
    ]


#: Broadcasts a backend publishes: (message, group, exclude). Quotes, backslashes,
#: control characters, non-ASCII and a lone surrogate travel in the JSON text.
BROADCASTS = [
    ("plain", None, None),
    ('q"uote\\back\nline\x00\x1f', None, None),
    ("é€😀\ud800", "room:1", None),
    ("to all but one", None, "S" * 22),
    ("both", 'g"1', "x\\"),
    ("y" * 600, None, None),  # large: appended on its own, never grouped
    ("z" * (BIG_ENTRY - 70), "g", "x"),  # small enough to be grouped
]


async def test_a_backends_broadcasts_reach_readers_as_their_envelopes() -> None:
    """The broadcast path makes its entry's text itself; readers see what ``publish`` sent."""
    backend = RedisBackend("redis://127.0.0.1:1/0", prefix="p", bus_maxlen=1000)
    client = connected(backend._link)
    for message, group, exclude in BROADCASTS:
        await backend.publish_broadcast(message, group=group, exclude=exclude, origin="hub")
    await flushed(backend._writer)
    (commands,) = client.sent
    assert [name for name, _ in commands] == ["xadd", "append", "xadd"]
    other, got = reader()
    for name, sent in commands:
        if name == "xadd":
            other.dispatch(sent)
        else:  # append.lua's 3 keys and 5 fixed arguments, then name, value, name, value...
            flat = sent[8:]
            other.dispatch(dict(zip(flat[::2], flat[1::2], strict=True)))
    assert [(e.kind, e.message, e.group, e.exclude) for e in got] == [
        (Kind.BROADCAST, m, g, x) for m, g, x in BROADCASTS
    ]
    assert {e.origin for e in got} == {backend.worker_id}


async def test_a_broadcast_the_full_buffer_refuses_is_an_error() -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0", prefix="p", buffer_max_writes=2)
    connected(backend._link)
    for message in ("a", "b"):
        await backend.publish_broadcast(message, group=None, exclude=None, origin="hub")
    with pytest.raises(BackendError, match="buffer is full"):
        await backend.publish_broadcast("c", group=None, exclude=None, origin="hub")
    assert backend.buffered == 2


async def test_a_group_sent_is_sealed_and_sent_again_whole_after_a_failure() -> None:
    bus, client = writer(max_writes=100, max_bytes=100_000)
    client.gate.clear()  # the first round trip waits
    client.replies = [[redis_errors.ConnectionError("gone")]]
    for m in "ab":
        assert bus.publish({"k": "broadcast", "m": m})
    task = asyncio.create_task(bus.run_forever())
    try:
        async with asyncio.timeout(10):
            await client.asked.wait()  # the group [a, b] is in flight
            assert bus.publish({"k": "broadcast", "m": "c"})  # does not join it
            client.gate.set()
            await bus.drained.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    rounds = [[grouped(c) for c in batch] for batch in client.sent]
    assert rounds == [[["a", "b"]], [["a", "b"], ["c"]]]  # resent whole, with the same numbers
    assert json.loads(client.sent[0][0][1]["e"]) == json.loads(client.sent[1][0][1]["e"])


async def test_the_reader_waits_for_room_for_a_whole_group() -> None:
    """A group of entries that would take the buffer past half waits for it to empty."""
    bus, client = writer(max_writes=6, max_bytes=100_000)
    client.gate.clear()  # the round trip waits
    assert bus.call(ack(), size=4)
    task = asyncio.create_task(bus.run_forever())
    try:
        async with asyncio.timeout(10):
            await client.asked.wait()
            await bus.wait_room(2)  # 1 + 2 fit in half of 6: at once
            whole = asyncio.create_task(bus.wait_room(5))  # 1 + 5 would not
            await asyncio.sleep(0)  # let it start; it must still wait
            assert not whole.done()
            client.gate.set()
            await whole  # the buffer emptied
            assert len(bus) == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_the_bound_counts_every_entry_of_a_group() -> None:
    bus, _client = writer(max_writes=3, max_bytes=100_000)
    for m in "abc":
        assert bus.publish({"k": "broadcast", "m": m})
    assert len(bus) == 3
    assert not bus.publish({"k": "broadcast", "m": "d"})  # full: refused, not grouped
    assert len(bus) == 3


async def _no_wait(needed: int) -> None:
    return None


def reader(me: str = "reader") -> tuple[BusReader, list[Envelope]]:
    settings_ = settings()
    got: list[Envelope] = []
    bus = BusReader(Link(settings_, me), _no_wait, listener=None)  # type: ignore[arg-type]
    bus.deliver = got.append
    return bus, got


def test_a_reader_delivers_a_groups_entries_in_order_once() -> None:
    bus, got = reader()
    first = group_of("w1", entry(1, "a"), entry(2, "b"))
    bus.dispatch(first)
    bus.dispatch(first)  # a group written again after an unclear failure
    bus.dispatch(group_of("w1", entry(2, "b"), entry(3, "c")))  # regrouped on replay
    assert [(e.message, e.origin, e.kind) for e in got] == [
        ("a", "w1", Kind.BROADCAST),
        ("b", "w1", Kind.BROADCAST),
        ("c", "w1", Kind.BROADCAST),
    ]


def test_a_reader_skips_its_own_groups() -> None:
    bus, got = reader(me="w1")
    bus.dispatch(group_of("w1", entry(1, "a"), entry(2, "b")))
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


@pytest.mark.redis
async def test_a_views_next_take_that_never_runs_still_acknowledges_what_it_wrote(
    redis_server: RedisServer,
) -> None:
    """take_next's acknowledgement rides on the take; if the take does not run, alone."""
    prefix = "viewack"
    backend = await _home(redis_server, prefix, SID)
    client: Any = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    in_flight = f"{prefix}:f:{backend.worker_id}"
    try:
        assert backend.push(SID, "a") and backend.push(SID, "b")
        first = await backend.take_next(SID, 5.0, lambda: True, None)
        assert first is not None and first.message == "a"
        assert await client.hexists(in_flight, first.token)
        # The stream went away before its next take: nothing taken, "a" acknowledged.
        assert await backend.take_next(SID, 5.0, lambda: False, first) is None
        await _drained(backend)
        assert not await client.hexists(in_flight, first.token)
        assert await client.hget(f"{prefix}:s:{SID}", "fly") is None
        following = await backend.take_next(SID, 5.0, lambda: True, None)
        assert following is not None and following.message == "b"  # the queue moves on
        backend.ack(following)
    finally:
        await backend.close()
        await client.aclose()
