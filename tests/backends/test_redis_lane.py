"""The write buffer's lane against a real redis-server: replies, settings, failures.

The lane sends a batch on a connection of its own, outside redis-py's pipeline
and pool, so what those gave has to hold here too: one reply per command in
order, an error Redis answered in its command's place, the URL's database and
the worker's client name, and a connection that broke or stalled failing one
batch (a transient error the writer retries) while the next one connects again.
The bus reader's reads go through a lane too: their raw replies, RESP2 or RESP3,
give the entries redis-py's ``xread`` gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from bullet_py.backends.redis import RedisBackend
from bullet_py.backends.redis.bus import info_field, pairs, stream_entries
from bullet_py.backends.redis.link import TRANSIENT, Link
from tests.backends.conftest import RedisServer

pytestmark = pytest.mark.redis


@contextlib.asynccontextmanager
async def opened(url: str, *, socket_timeout: float = 5.0) -> AsyncIterator[Link]:
    """The link of a backend for ``url``, its clients and lanes made (they connect on use)."""
    link = RedisBackend(url, prefix="lane", socket_timeout=socket_timeout)._link
    link.open()
    try:
        yield link
    finally:
        await link.aclose()


@contextlib.asynccontextmanager
async def admin_of(url: str) -> AsyncIterator[Any]:
    """A plain redis-py client, to look at what the lane did from outside."""
    admin: Any = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        yield admin
    finally:
        await admin.aclose()


async def test_a_batch_gets_every_reply_in_order_with_an_error_in_its_place(
    redis_server: RedisServer,
) -> None:
    async with opened(redis_server.url) as link, asyncio.timeout(10):
        replies = await link.require_lane().execute(
            [
                ("SET", "k", "v"),
                ("EVALSHA", "0" * 40, 0),  # no such script
                ("INCR", "k"),  # not a number
                ("GET", "k"),
                ("RPUSH", "l", "a", "b"),
            ]
        )
    assert replies[0] == "OK"
    assert isinstance(replies[1], redis_errors.NoScriptError)
    assert isinstance(replies[2], redis_errors.ResponseError)
    assert replies[3:] == ["v", 2]


async def test_the_lane_uses_the_urls_database_and_the_workers_client_name(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    async with opened(url) as link, admin_of(url) as admin, asyncio.timeout(10):
        (client_id,) = await link.require_lane().execute([("CLIENT", "ID")])
        await link.require_lane().execute([("SET", "in-three", "yes")])
        assert await admin.get("in-three") == "yes"
        listed = {int(c["id"]): c for c in await admin.client_list()}
    assert listed[client_id]["name"] == f"lane:{link.worker_id}"
    assert listed[client_id]["db"] == "3"


async def test_a_killed_connection_fails_one_batch_and_the_next_connects_again(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url
    async with opened(url) as link, admin_of(url) as admin, asyncio.timeout(10):
        lane = link.require_lane()
        (client_id,) = await lane.execute([("CLIENT", "ID")])
        assert await admin.client_kill_filter(_id=client_id) == 1
        with pytest.raises(TRANSIENT):
            await lane.execute([("SET", "k", "lost?")])
        assert await lane.execute([("SET", "k", "again"), ("GET", "k")]) == ["OK", "again"]
        (new_id,) = await lane.execute([("CLIENT", "ID")])
    assert new_id != client_id


async def test_a_stalled_redis_times_out_a_batch_and_the_lane_recovers(
    redis_server: RedisServer,
) -> None:
    proc = redis_server.proc
    assert proc is not None
    async with opened(redis_server.url, socket_timeout=0.3) as link, asyncio.timeout(20):
        lane = link.require_lane()
        assert await lane.execute([("SET", "k", "before")]) == ["OK"]
        proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(TRANSIENT):
                await lane.execute([("SET", "k", "during")])
        finally:
            proc.send_signal(signal.SIGCONT)
        # The stalled batch's reply is never read as this one's: a new connection.
        assert await lane.execute([("SET", "k", "after"), ("GET", "k")]) == ["OK", "after"]


@pytest.mark.parametrize("protocol", [2, 3])
async def test_a_raw_read_of_the_bus_gives_the_entries_redis_py_gives(
    redis_server: RedisServer, protocol: int
) -> None:
    """The bus reader's XREAD goes through its lane; its entries are parsed here (RESP2 and 3)."""
    url = f"{redis_server.url}?protocol={protocol}"
    written = [{"k": "broadcast", "m": "é€😀"}, {"k": "many", "o": "w", "n": "2", "e": "[]"}]
    async with opened(url) as link, admin_of(redis_server.url) as admin, asyncio.timeout(10):
        ids = [await admin.xadd("bus", fields) for fields in written]
        assert stream_entries(
            await link.require_read_lane().call(
                "XREAD", "COUNT", 10, "BLOCK", 100, "STREAMS", "bus", "0-0"
            )
        ) == list(zip(ids, written, strict=True))
        ((_stream, parsed),) = await admin.xread({"bus": "0-0"}, count=10)
        assert [(i, dict(f)) for i, f in parsed] == list(zip(ids, written, strict=True))
        timed_out = await link.require_read_lane().call(
            "XREAD", "COUNT", 10, "BLOCK", 50, "STREAMS", "bus", ids[-1]
        )
        assert stream_entries(timed_out) == []


@pytest.mark.parametrize("protocol", [2, 3])
async def test_the_readers_checks_parse_info_and_the_streams_trimmed_id(
    redis_server: RedisServer, protocol: int
) -> None:
    """After a reconnection the bus reader asks INFO and XINFO STREAM on its lane, raw."""
    url = f"{redis_server.url}?protocol={protocol}"
    async with opened(url) as link, admin_of(redis_server.url) as admin, asyncio.timeout(10):
        lane = link.require_read_lane()
        server = await admin.info("server")
        assert info_field(await lane.call("INFO", "server"), "run_id") == server["run_id"]
        assert info_field(await lane.call("INFO", "server"), "no_such_field") == ""
        ids = [await admin.xadd("bus", {"k": "x"}) for _ in range(3)]
        await admin.xdel("bus", ids[1])
        stream = pairs(await lane.call("XINFO", "STREAM", "bus"))
        assert stream["max-deleted-entry-id"] == ids[1]
        assert stream["length"] == 2
