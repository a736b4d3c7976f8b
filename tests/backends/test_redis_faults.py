"""Redis stalls and dead workers: no late write strands a message or a session.

Redis is frozen with SIGSTOP (and always resumed with SIGCONT in a
``finally``): commands sent meanwhile wait in its sockets and run when it
resumes, after their callers have timed out and given up on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from yarl import URL

from bullet_py import Options, setup
from bullet_py.backends.redis.link import CLAIM_LEASE
from tests.backends.conftest import RedisServer
from tests.backends.contract import (
    BrokerFactory,
    Cluster,
    ClusterFixtures,
    ContractHandler,
    StartCluster,
)
from tests.backends.test_cluster import PollPage, start_cluster
from tests.backends.test_redis import redis_factory
from tests.helpers import FAST, wait_for

pytestmark = pytest.mark.redis

#: Each Redis command times out after this; the stalls below last longer.
SOCKET_TIMEOUT = 1.0
#: Long enough that no worker takes another for dead during a stall.
STALL_BROKER = {"socket_timeout": SOCKET_TIMEOUT, "reconnect_max": 0.2, "worker_ttl": 10.0}


@contextlib.contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """Redis stops answering (SIGSTOP) until the block ends (SIGCONT, always)."""
    assert server.proc is not None
    pid = server.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def redis_state(check: Any, timeout: float = 10.0) -> None:
    """Wait, bounded in time, until ``await check()`` is true (state in Redis: polled)."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - state in Redis: polled
            await asyncio.sleep(0.02)


class TestStalls(ClusterFixtures):
    workers = 2

    @pytest.fixture
    def broker_factory(self, redis_server: RedisServer) -> BrokerFactory:
        return redis_factory(redis_server)

    @pytest.fixture
    async def start_cluster(self, broker_factory: BrokerFactory) -> AsyncIterator[StartCluster]:
        """Servers as ``web.run_app`` makes them: a client leaving does not cancel its
        handler (the test server's default does), so a poll notices it between calls."""
        runners: list[web.AppRunner] = []

        async def start(*, broker: dict[str, Any] | None = None, **options: Any) -> Cluster:
            events: Any = []
            endpoints, urls = [], []
            for _ in range(self.workers):
                app = web.Application()
                endpoint = setup(
                    app,
                    "/bullet",
                    lambda: ContractHandler(events),
                    options=Options(**{**FAST, **options}),
                    broker=broker_factory(**(broker or {})),
                )
                runner = web.AppRunner(app, handler_cancellation=False)
                await runner.setup()
                runners.append(runner)
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                host, port = runner.addresses[0][:2]
                urls.append(URL.build(scheme="http", host=host, port=port, path="/bullet"))
                endpoints.append(endpoint)
            return Cluster(endpoints, urls, list(runners), events)

        yield start
        for runner in reversed(runners):
            await runner.cleanup()

    async def test_a_take_that_runs_after_its_poll_left_strands_nothing(
        self,
        start_cluster: StartCluster,
        browser_factory: Any,
        redis_server: RedisServer,
    ) -> None:
        """The page's poll on its home is dropped while Redis is frozen; the take it
        sent runs when Redis resumes and pops a message nobody will deliver. The
        worker fenced that take: the message goes back, later ones follow."""
        cluster = await start_cluster(
            broker=STALL_BROKER, poll_timeout=2.0, session_idle_timeout=60
        )
        browser = browser_factory(cluster)
        sid = await browser.live(home=0)
        await cluster.hub(0).send(sid, "m0")
        assert await browser.drain(1, start=0, step=0) == ["m0"]
        await cluster.hub(0).send(sid, "m1")  # waits in Redis for the next poll
        await wait_for(lambda: cluster.endpoint(0).hub.broker.buffered == 0)

        with frozen(redis_server):
            poll = asyncio.ensure_future(browser.poll(0))
            await wait_for(lambda: cluster.parked(sid) == 1)  # its take is on its way
            poll.cancel()  # the page's connection drops
            with contextlib.suppress(asyncio.CancelledError):
                await poll
            # The worker gives up on the take (its call timed out): the stall is
            # longer than the call's timeout, so the take runs late.
            await wait_for(lambda: cluster.parked(sid) == 0, timeout=SOCKET_TIMEOUT * 5)

        for text in ("m2", "m3"):
            await cluster.hub(0).send(sid, text)
        async with asyncio.timeout(20):
            got = await browser.drain(3, start=0, step=0, limit=6)
        assert got == ["m1", "m2", "m3"]
        backend = cluster.endpoint(0).hub.broker
        assert backend.connected and backend.reconnects >= 1

    async def test_a_claim_that_runs_after_its_poll_got_503_lapses(
        self,
        start_cluster: StartCluster,
        browser_factory: Any,
        redis_server: RedisServer,
        redis_client: aioredis.Redis,
    ) -> None:
        """A first poll during a stall gets 503; the claim it sent runs after the
        stall. A worker that never made the session is not its home for long: a
        poll elsewhere is answered when the claim lapses, then gets a new cookie."""
        cluster = await start_cluster(broker=STALL_BROKER, poll_timeout=30.0)
        browser = browser_factory(cluster)
        sid = await browser.open(1)
        prefix = cluster.endpoint(0).hub.broker.prefix

        with frozen(redis_server):
            assert (await browser.poll(0))[0] == 503
        assert cluster.sessions() == 0

        async def claimed() -> bool:  # the late claim ran
            return await redis_client.hget(f"{prefix}:s:{sid}", "home") is not None

        await redis_state(claimed)
        started = time.monotonic()
        async with asyncio.timeout(CLAIM_LEASE + 5):
            status, _ = await browser.poll(1)
        assert status == 204
        assert time.monotonic() - started <= CLAIM_LEASE + 2
        assert browser.sid == sid  # that poll saw the claim lapse; the next one starts again
        assert (await browser.poll(1))[0] == 204
        assert browser.sid not in (None, sid)
        assert await browser.post(0, "noreply:claim") == (204, "")
        assert cluster.sessions() == 1

    async def test_the_bus_is_bounded_in_bytes_and_says_when_it_trims(
        self,
        start_cluster: StartCluster,
        browser_factory: Any,
        redis_client: aioredis.Redis,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """1 MB POSTs to a worker that is not the session's home ride on the bus."""
        caplog.set_level(logging.INFO, logger="bullet_py")
        bound = 4 * 1_048_576
        cluster = await start_cluster(broker={"bus_max_bytes": bound}, post_rate_per_session=None)
        browser = browser_factory(cluster)
        sid = await browser.live(home=0)
        before = int((await redis_client.info("memory"))["used_memory"])
        big = "noreply:" + "x" * 1_000_000
        for _ in range(40):
            assert await browser.post(1, big) == (204, "")
        await wait_for(lambda: cluster.endpoint(1).hub.broker.buffered == 0)
        grown = int((await redis_client.info("memory"))["used_memory"]) - before
        assert grown < 3 * bound, f"Redis grew by {grown} bytes"
        assert "event=bus_trimmed" in caplog.text
        assert len(cluster.messages(sid)) == 41  # each was run by the home first

    async def test_forwarded_posts_leave_the_bus_once_their_timeout_passed(
        self,
        start_cluster: StartCluster,
        browser_factory: Any,
        redis_client: aioredis.Redis,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Their POSTs were answered: the entries are of no use, and not an overflow."""
        caplog.set_level(logging.INFO, logger="bullet_py")
        cluster = await start_cluster(broker={"forward_timeout": 0.5}, post_rate_per_session=None)
        browser = browser_factory(cluster)
        await browser.live(home=0)
        bus = f"{cluster.endpoint(0).hub.broker.prefix}:bus"
        assert await browser.post(1, "noreply:first") == (204, "")
        entries = await redis_client.xrange(bus)
        first = [entry_id for entry_id, f in entries if f.get("m") == "noreply:first"]
        assert len(first) == 1
        async with asyncio.timeout(5):  # each append deletes what outlived its timeout
            while await redis_client.xrange(bus, first[0], first[0]):
                await asyncio.sleep(0.1)  # the entry's age is the condition
                assert await browser.post(1, "noreply:next") == (204, "")
        assert "event=bus_trimmed" not in caplog.text


async def test_a_dead_workers_parked_poll_elsewhere_is_answered_within_worker_ttl(
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ttl = 2.0
    monkeypatch.setenv("LEDGER_POLL_TIMEOUT", "30")  # far longer than worker_ttl
    async with start_cluster(redis_server.url, worker_ttl=ttl) as cluster:
        page = PollPage(cluster)
        try:
            sid = await page.open(home=1)
            parked = asyncio.ensure_future(page.get(0))

            async def waiting() -> bool:
                return bool(await redis_client.zcard(f"{cluster.prefix}:k:{sid}"))

            await redis_state(waiting)
            os.kill(cluster.worker_pid(cluster.ports[1]), signal.SIGKILL)
            killed = time.monotonic()
            async with asyncio.timeout(ttl * 3 + 5):
                status, _ = await parked
            waited = time.monotonic() - killed
            assert status == 204
            assert waited <= ttl + 1.0, f"answered {waited:.2f}s after the kill"
        finally:
            await page.close()
