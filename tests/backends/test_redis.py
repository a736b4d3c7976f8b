"""The backend contract on Redis (two in-process workers), and what only Redis has:
outages, a full buffer, a late home, many parked polls, a process dying with a
message in hand, and the optional dependency.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bullet_py import BackendError, Connection, Options, Overflow
from bullet_py.backends.redis import RedisBackend
from bullet_py.core.outbox import Outbox
from tests.backends.conftest import RedisServer
from tests.backends.contract import (
    BackendContract,
    BrokerFactory,
    ClusterFixtures,
    ContractHandler,
    Events,
    StartCluster,
    in_publisher_order,
)
from tests.helpers import POLL_HEADERS, wait_for
from tests.processes import ROOT

pytestmark = pytest.mark.redis

_prefixes = itertools.count()


def redis_factory(server: RedisServer) -> BrokerFactory:
    prefix = f"t{os.getpid()}x{next(_prefixes)}"

    def make(**kwargs: Any) -> RedisBackend:
        return RedisBackend(server.url, prefix=prefix, **{"worker_ttl": 2.0, **kwargs})

    return make


class TestRedisBackend(BackendContract):
    workers = 2

    @pytest.fixture
    def broker_factory(self, redis_server: RedisServer) -> BrokerFactory:
        return redis_factory(redis_server)


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def key_exists(client: aioredis.Redis, key: str, timeout: float = 5.0) -> None:
    """Wait, bounded in time, until ``key`` exists in Redis."""
    async with asyncio.timeout(timeout):
        while not await client.exists(key):  # noqa: ASYNC110 - state in Redis: polled
            await asyncio.sleep(0.02)


class Slow(ContractHandler):
    """``slow`` waits for the test's go-ahead before answering."""

    release: asyncio.Event

    async def on_message(self, conn: Connection, message: str) -> str | None:
        if message == "slow":
            await Slow.release.wait()
            return "slow-reply"
        return await super().on_message(conn, message)


class TestRedisOnly(ClusterFixtures):
    workers = 2

    @pytest.fixture
    def broker_factory(self, redis_server: RedisServer) -> BrokerFactory:
        return redis_factory(redis_server)

    # --- outages ---------------------------------------------------------------------

    async def test_pushes_during_an_outage_are_flushed_once_in_order_after_a_restart(
        self,
        start_cluster: StartCluster,
        browser_factory: Any,
        redis_server: RedisServer,
        redis_client: aioredis.Redis,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Redis restarts empty (no persistence): what was buffered is not lost."""
        caplog.set_level(logging.INFO, logger="bullet_py")
        cluster = await start_cluster(session_idle_timeout=30, poll_timeout=1.0)
        browser = browser_factory(cluster)
        sockets = [await browser.page_socket(i) for i in range(2)]
        poller = browser_factory(cluster)
        sid = await poller.live(home=0)
        await wait_for(lambda: cluster.sessions() == 3)
        backends = [e.hub.broker for e in cluster.endpoints]

        await redis_server.stop()
        sent = [f"b{i}" for i in range(10)]
        for text in sent:
            await cluster.hub(1).broadcast(text)  # buffered by worker 1
        for i in range(5):
            await cluster.hub(1).send(sid, f"p{i}")
        assert [(await sockets[1].receive(timeout=5)).data for _ in sent] == sent  # local
        await wait_for(lambda: not any(b.connected for b in backends))
        assert backends[1].buffered >= 15
        assert "event=backend_disconnected" in caplog.text

        await redis_server.start()
        assert [(await sockets[0].receive(timeout=10)).data for _ in sent] == sent
        # At its home first: another worker would not know the session until the
        # home has told the restarted (empty) Redis about it again.
        assert await poller.drain(15, step=0) == [*sent, *(f"p{i}" for i in range(5))]
        await wait_for(lambda: all(b.connected and b.buffered == 0 for b in backends))
        assert "event=backend_reconnected" in caplog.text
        assert "event=redis_restarted" in caplog.text
        # The home announced its session again: any worker serves it.
        await key_exists(redis_client, f"{backends[0].prefix}:s:{sid}")
        await cluster.hub(0).send(sid, "after")
        assert await poller.drain(1, start=1) == ["after"]
        for ws in sockets:
            await ws.close()

    async def test_a_full_buffer_is_reported_to_the_caller(
        self,
        start_cluster: StartCluster,
        browser_factory: Any,
        redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.WARNING, logger="bullet_py")
        cluster = await start_cluster(broker={"buffer_max_writes": 5}, session_idle_timeout=30)
        browser = browser_factory(cluster)
        ws = await browser.session.ws_connect(cluster.url(1))
        poller = browser_factory(cluster)
        sid = await poller.live(home=1)
        await wait_for(lambda: cluster.sessions() == 2)
        await redis_server.stop()
        # Worker 0 has no session: each broadcast is one write waiting for Redis.
        for i in range(5):
            await cluster.hub(0).broadcast(f"kept{i}")
        with pytest.raises(BackendError):
            await cluster.hub(0).broadcast("refused")
        assert "event=backend_buffer_full" in caplog.text
        # Worker 1's polling session: each push is one write, the sixth refused.
        conn = cluster.conn(sid)
        assert conn is not None and conn.store is not None
        assert [conn.send(f"p{i}") for i in range(6)] == [True] * 5 + [False]
        await redis_server.start()
        kept = [f"kept{i}" for i in range(5)]
        assert [(await ws.receive(timeout=10)).data for _ in kept] == kept
        # Worker 1 may read the entries before worker 0 has Redis's reply and
        # lets go of them: the next broadcast waits for an empty buffer.
        await wait_for(lambda: cluster.hub(0).broker.buffered == 0)
        await cluster.hub(0).broadcast("next")
        assert (await ws.receive(timeout=10)).data == "next"
        assert await poller.drain(11, step=0, start=1) == [
            *(f"p{i}" for i in range(5)),
            *kept,
            "next",
        ]
        await ws.close()

    async def test_a_poll_during_an_outage_answers_and_the_session_lives_on(
        self, start_cluster: StartCluster, browser_factory: Any, redis_server: RedisServer
    ) -> None:
        cluster = await start_cluster(session_idle_timeout=30, poll_timeout=0.5)
        browser = browser_factory(cluster)
        sid = await browser.live(home=0)
        await redis_server.stop()
        assert (await browser.poll(1))[0] == 503  # cannot locate: the client retries
        assert await browser.poll(0) == (204, "")  # the home waits out its poll
        await redis_server.start()
        await cluster.hub(1).send(sid, "back")
        assert await browser.drain(1, step=0) == ["back"]
        assert browser.sid == sid

    # --- forwarding ----------------------------------------------------------------------

    async def test_a_late_home_gets_202_and_its_reply_comes_by_poll(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        Slow.release = asyncio.Event()
        cluster = await start_cluster(
            handler=Slow, broker={"forward_timeout": 0.3}, session_idle_timeout=30
        )
        browser = browser_factory(cluster)
        await browser.live(home=0)
        assert await browser.post(1, "slow") == (202, "")
        Slow.release.set()
        assert await browser.drain(1) == ["slow-reply"]
        assert await browser.post(1, "quick") == (200, "quick")

    # --- many parked polls ----------------------------------------------------------------

    async def test_parked_polls_share_a_few_redis_connections(
        self, start_cluster: StartCluster, browser_factory: Any, redis_client: aioredis.Redis
    ) -> None:
        cluster = await start_cluster(poll_timeout=30, session_idle_timeout=60)
        count = 150
        browsers = [browser_factory(cluster) for _ in range(count)]
        sids = [await b.live(home=0) for b in browsers]
        polls = [asyncio.ensure_future(b.poll(1)) for b in browsers]
        await wait_for(lambda: sum(cluster.parked(s) for s in sids) == count, timeout=20)
        clients = await redis_client.client_list()
        pool = RedisBackend().pool_size
        # 2 workers × (command pool, the writer's lane, the bus reader's lane), this
        # test's client: not one per poll.
        assert len(clients) <= 2 * (pool + 2) + 2 < count
        for i, sid in enumerate(sids):
            await cluster.hub(i).send(sid, f"to{i}")
        assert [await asyncio.wait_for(p, 10) for p in polls] == [
            (200, f"to{i}") for i in range(count)
        ]

    # --- a process dying with a message in hand --------------------------------------------

    async def test_a_message_taken_by_a_process_that_dies_goes_back_to_its_queue(
        self,
        start_cluster: StartCluster,
        browser_factory: Any,
        redis_server: RedisServer,
    ) -> None:
        cluster = await start_cluster(session_idle_timeout=30, poll_timeout=1.0)
        browser = browser_factory(cluster)
        sid = await browser.live(home=0)
        prefix = cluster.endpoint(0).hub.broker.prefix
        taker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            TAKER,
            redis_server.url,
            prefix,
            sid,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT / "src"), str(ROOT)))},
        )
        try:
            assert taker.stdout is not None
            started = await asyncio.wait_for(taker.stdout.readline(), 10)
            assert started == b"waiting\n"
            await cluster.hub(1).send(sid, "held")
            assert await asyncio.wait_for(taker.stdout.readline(), 10) == b"took held\n"
            await cluster.hub(1).send(sid, "next")
            taker.send_signal(signal.SIGKILL)  # dies before answering its poll
            await taker.wait()
            # "next" may not overtake "held": polls wait until the taker is known
            # dead (its heartbeat stale), then the next one takes "held" over.
            assert await browser.drain(2) == ["held", "next"]
        finally:
            if taker.returncode is None:
                taker.kill()
                await taker.wait()

    # --- settings and the optional dependency ------------------------------------------------

    def test_settings_are_checked(self) -> None:
        with pytest.raises(ValueError):
            RedisBackend(session_ttl=0)
        with pytest.raises(ValueError):
            RedisBackend(worker_ttl=5, heartbeat=5)
        with pytest.raises(ValueError):
            RedisBackend(buffer_max_writes=0)
        with pytest.raises(ValueError):
            RedisBackend(prefix="a b")
        assert RedisBackend(write_only=True).store is None


def test_without_redis_the_import_error_names_the_extra() -> None:
    code = "import sys; sys.modules['redis'] = None; import bullet_py.backends.redis"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "pip install 'bullet_py[redis]'" in result.stderr
    code = "import sys; sys.modules['redis'] = None; import bullet_py; print(bullet_py.Hub)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


class OverflowCounter:
    """The sessions of a bare backend: none, but overflows are counted."""

    def __init__(self) -> None:
        self.overflowed = 0

    async def handle_forwarded(self, session_id: str, message: str) -> tuple[bool, str | None]:
        return False, None

    def queue_overflowed(self, session_id: str) -> None:
        self.overflowed += 1


@pytest.mark.parametrize("policy", [Overflow.DROP_NEWEST, Overflow.DROP_OLDEST])
async def test_the_shared_queue_is_bounded_in_characters_as_in_memory(
    redis_server: RedisServer, redis_client: aioredis.Redis, policy: Overflow
) -> None:
    """Two to four UTF-8 bytes (or a lone surrogate) are one character, as in an Outbox."""
    max_chars = 8
    options = Options(outbox_max_messages=100, outbox_max_chars=max_chars, overflow=policy)
    sessions = OverflowCounter()
    backend = redis_factory(redis_server)()
    backend.bind(sessions, options)
    await backend.start(lambda envelope: None)
    try:
        for n, letter in enumerate(["x", "é", "€", "😀", "\ud800"]):
            sid = f"{n}" * 32
            backend.adopt(sid, queued=True)
            box = Outbox(100, max_chars)
            overflowed = sessions.overflowed
            for size in (5, 3, 2, max_chars + 1):
                box.offer(letter * size, drop_oldest=policy is Overflow.DROP_OLDEST)
                assert backend.push(sid, letter * size)
            await wait_for(lambda: backend.buffered == 0)
            assert sessions.overflowed - overflowed == box.dropped
            key = f"{backend.prefix}:s:{sid}"
            assert await redis_client.hget(key, "qc") == str(box.chars)
            queued = []
            while (taken := await backend.take(sid, 0.05, lambda: True)) is not None:
                queued.append(taken.message)
                backend.ack(taken)
            assert queued == list(box), letter
            assert await redis_client.hget(key, "qc") == "0"
    finally:
        await backend.close()


#: A process that takes one message from a session's shared queue and never answers.
TAKER = """
import asyncio, sys
from bullet_py import Options
from bullet_py.backends.redis import RedisBackend
from bullet_py.core.outbox import Outbox

class Nobody:
    async def handle_forwarded(self, session_id, message):
        return False, None
    def queue_overflowed(self, session_id):
        pass

async def main(url, prefix, sid):
    backend = RedisBackend(url, prefix=prefix, worker_ttl=1.0)
    backend.bind(Nobody(), Options())
    await backend.start(lambda envelope: None)
    print("waiting", flush=True)
    taken = await backend.take(sid, 30, lambda: True)
    print("took", taken.message, flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_polling_page_on_any_worker_sees_the_same_cookie(
    redis_server: RedisServer, aiohttp_server: Any
) -> None:
    """A raw check of the wire: one Set-Cookie, then the cookie is valid everywhere."""
    from aiohttp import web

    from bullet_py import Options, setup
    from tests.helpers import FAST, Recorder

    events: Events = []
    factory = redis_factory(redis_server)
    servers = []
    for _ in range(2):
        app = web.Application()
        setup(app, "/bullet", lambda: Recorder(events), options=Options(**FAST), broker=factory())
        servers.append(await aiohttp_server(app))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        first = await http.get(servers[0].make_url("/bullet"), headers=POLL_HEADERS)
        assert first.status == 204
        cookies = first.headers.getall("Set-Cookie")
        assert len(cookies) == 1 and "HttpOnly" in cookies[0] and "SameSite=Lax" in cookies[0]
        second = await http.get(servers[1].make_url("/bullet"), headers=POLL_HEADERS)
        assert second.status == 204
        assert "Set-Cookie" not in second.headers  # known on worker 1 too: no new cookie
    in_publisher_order([], {})
