"""Several worker processes behind no balancer at all: the test is the round robin.

Workers are started with ``examples/cluster.py`` (the Backbone app, or the
ledger app of ``worker_app.py``) around a real redis-server. Clients send
consecutive requests of one session to alternating ports, WebSocket pages
live on one worker and get pushes made on another or by this test process
(which runs no server: a "job"), Redis is stopped and started again, a
worker is killed. Every case checks that every message arrived once, in the
order its publisher pushed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psutil
import pytest
import redis.asyncio as aioredis

from bullet_py import Hub, Options
from bullet_py.backends.redis import RedisBackend
from bullet_py.codec.bert import decode, encode
from bullet_py.codec.terms import Atom
from bullet_py.registry import Registry
from tests.backends.conftest import RedisServer
from tests.helpers import POLL_HEADERS, POST_HEADERS, cache_buster
from tests.processes import ROOT, Running, run_script

pytestmark = pytest.mark.redis

LEDGER = "tests.backends.worker_app:make_app"
TIMEOUT = 10.0


# --- starting a cluster ---------------------------------------------------------


def consecutive_ports(count: int, attempts: int = 200) -> int:
    """A first port P such that P..P+count-1 are free on 127.0.0.1 right now."""
    for _ in range(attempts):
        base = random.randint(20_000, 60_000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise AssertionError("no free ports")


class Cluster:
    def __init__(self, running: Running, first_port: int, workers: int, prefix: str) -> None:
        self.running = running
        self.ports = [first_port + i for i in range(workers)]
        self.prefix = prefix

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i % len(self.ports)]}/bullet"

    def worker_pid(self, port: int) -> int:
        """The worker process listening on ``port`` (a child of the supervisor)."""
        for child in psutil.Process(self.running.proc.pid).children():
            for conn in child.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                    return child.pid
        raise AssertionError(f"no worker listens on {port}")

    def lines(self) -> list[str]:
        return [self.running.line, *self.running.output]


_prefixes = iter(range(10**6))


@contextlib.asynccontextmanager
async def start_cluster(
    redis_url: str, *, workers: int = 2, app: str | None = LEDGER, worker_ttl: float = 15.0
) -> AsyncIterator[Cluster]:
    port = consecutive_ports(workers)
    prefix = f"c{os.getpid()}x{next(_prefixes)}"
    args = ["--workers", str(workers), "--redis", redis_url, "--prefix", prefix]
    args += ["--worker-ttl", str(worker_ttl)]
    if app is not None:
        args += ["--app", app]
    saved = os.environ.get("PYTHONPATH")
    # The workers import this tree's bullet_py (not an installed copy) and
    # tests.backends.worker_app.
    os.environ["PYTHONPATH"] = os.pathsep.join((str(ROOT / "src"), str(ROOT)))
    try:
        context = run_script("cluster.py", *args, port=port)
        running = await context.__aenter__()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    try:
        cluster = Cluster(running, port, workers, prefix)
        for worker_port in cluster.ports:  # one line per worker, in any order
            line = f"listening on http://127.0.0.1:{worker_port}"
            if running.line != line:
                await running.wait_output(line, timeout=30)
        yield cluster
    finally:
        await context.__aexit__(*sys.exc_info())


@contextlib.asynccontextmanager
async def job(redis_url: str, prefix: str) -> AsyncIterator[Hub]:
    """A process that runs no server pushing to sessions (this test process)."""
    hub = Hub(Registry(Options()), RedisBackend(redis_url, prefix=prefix, write_only=True))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()


# --- clients ----------------------------------------------------------------------


class WsPage:
    """A page on a WebSocket: learns its session id, then records what arrives."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.got: list[str] = []
        self.sid = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed = asyncio.Event()
        self._new = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, url: str) -> None:
        self.closed.clear()
        self.ws = await self.http.ws_connect(url)
        first = await self.ws.receive_str(timeout=TIMEOUT)
        assert first.startswith("sid:")
        self.sid = first[4:]
        self._reader = asyncio.ensure_future(self._read(self.ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.got.append(msg.data)
                self._new.set()
        self.closed.set()

    async def wait_for(self, count: int, timeout: float = TIMEOUT) -> list[str]:
        async with asyncio.timeout(timeout):
            while len(self.got) < count:
                self._new.clear()
                await self._new.wait()
        return self.got

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class PollPage:
    """A page on the original client's long polling: one cookie jar, any port."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.got: list[str] = []
        self.turn = 0

    @property
    def sid(self) -> str:
        for cookie in self.http.cookie_jar:
            if cookie.key == "bullet_sid":
                return cookie.value
        return ""

    async def get(self, port: int) -> tuple[int, str]:
        async with self.http.get(
            self.cluster.url(port), headers=POLL_HEADERS, params=cache_buster()
        ) as resp:
            return resp.status, await resp.text()

    async def post(self, port: int, body: str) -> tuple[int, str]:
        async with self.http.post(
            self.cluster.url(port), data=body.encode(), headers=POST_HEADERS
        ) as resp:
            return resp.status, await resp.text()

    async def open(self, home: int) -> str:
        """First GET on one worker, the cookie back first to ``home``: it runs the handler."""
        assert (await self.get(home + 1))[0] == 204
        assert (await self.post(home, "hello")) == (200, "hello")
        return self.sid

    async def drain(self, count: int, *, ports: list[int] | None = None, limit: int = 300) -> None:
        """Poll, alternating ``ports``, until ``count`` messages came in all (bounded)."""
        ports = ports if ports is not None else list(range(len(self.cluster.ports)))
        for _ in range(limit):
            if len(self.got) >= count:
                return
            port = ports[self.turn % len(ports)]
            self.turn += 1
            try:
                status, body = await self.get(port)
            except aiohttp.ClientError:
                continue  # that worker is gone: the original client moves on too
            if status == 200:
                self.got.append(body)
            else:
                assert status in (204, 503), status
        raise AssertionError(f"{len(self.got)} of {count} messages came")

    async def close(self) -> None:
        await self.http.close()


def assert_ledger(got: list[str], sent: dict[str, list[str]]) -> None:
    """Each message once; each publisher's messages in the order it pushed them."""
    expected = [m for ms in sent.values() for m in ms]
    assert sorted(got) == sorted(expected), (len(got), len(expected))
    for publisher, messages in sent.items():
        mine = set(messages)
        assert [m for m in got if m in mine] == messages, publisher


# --- the Backbone example -------------------------------------------------------------

A = Atom
SYNC = A("sync")


def sync(method: str, **props: Any) -> str:
    return encode((SYNC, (A(method), A("character"), [(A(k), v) for k, v in props.items()])))


def state_of(term: Any) -> dict[str, Any]:
    assert term[0] == SYNC and term[1] == A("ok"), term
    return {str(k): v for k, v in term[2]}


async def test_backbone_on_two_workers_an_update_through_any_worker_reaches_every_page(
    redis_server: RedisServer,
) -> None:
    async with start_cluster(redis_server.url, app=None) as cluster:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            ws0 = await http.ws_connect(cluster.url(0))
            # Two pages, two sessions: with ws0's cookie, ws1 would ask to resume
            # ws0's session, and ws0 (not reading now, so answering no ping) would
            # be found dead and dropped (docs/sessions.md, "A silent drop").
            http.cookie_jar.clear()
            ws1 = await http.ws_connect(cluster.url(1))
            poller = PollPage(cluster)
            try:
                assert (await poller.get(0))[0] == 204
                status, body = await poller.post(1, sync("read"))  # the session comes alive
                assert status == 200 and state_of(decode(body))["hp"] == 10
                # hp 11 through worker 0's page, 12 through worker 1's, 13 by a POST.
                await ws0.send_str(sync("update", hp=11))
                assert state_of(decode(await ws0.receive_str(timeout=TIMEOUT)))["hp"] == 11
                assert state_of(decode(await ws1.receive_str(timeout=TIMEOUT)))["hp"] == 11
                await ws1.send_str(sync("patch", hp=12, name="Łukasz €"))
                assert state_of(decode(await ws1.receive_str(timeout=TIMEOUT)))["hp"] == 12
                pushed = state_of(decode(await ws0.receive_str(timeout=TIMEOUT)))
                assert pushed["hp"] == 12 and pushed["name"] == "Łukasz €"
                status, body = await poller.post(0, sync("update", hp=13))  # not its home
                assert status == 200 and state_of(decode(body))["hp"] == 13
                for ws in (ws0, ws1):
                    assert state_of(decode(await ws.receive_str(timeout=TIMEOUT)))["hp"] == 13
                # The state is shared: a read through either worker sees the last update.
                await ws0.send_str(sync("read"))
                state = state_of(decode(await ws0.receive_str(timeout=TIMEOUT)))
                assert state == {
                    "id": 1,
                    "name": "Łukasz €",
                    "class": "wizard",
                    "level": 1,
                    "hp": 13,
                }
                status, body = await poller.post(0, sync("read"))
                assert state_of(decode(body)) == state
                # The polling page got the two pushes it did not cause, once, in order.
                await poller.drain(2)
                assert [state_of(decode(m))["hp"] for m in poller.got] == [11, 12]
            finally:
                await poller.close()
                await ws0.close()
                await ws1.close()
        pids = [cluster.worker_pid(p) for p in cluster.ports]
        assert await cluster.running.stop(signal.SIGINT) == 0
        assert not any(psutil.pid_exists(pid) and _alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- the ledger app ----------------------------------------------------------------------


async def test_polls_and_posts_alternating_workers_lose_nothing(redis_server: RedisServer) -> None:
    async with start_cluster(redis_server.url) as cluster:
        pages = [PollPage(cluster) for _ in range(3)]
        try:
            for i, page in enumerate(pages):
                await page.open(home=i % 2)  # homes: worker 0, 1, 0
            sent: dict[str, dict[str, list[str]]] = {p.sid: {} for p in pages}
            async with job(redis_server.url, cluster.prefix) as hub:
                for n in range(30):
                    for i, page in enumerate(pages):
                        text = f"job-{n}"
                        await hub.send(page.sid, text)
                        sent[page.sid].setdefault("job", []).append(text)
                        # A push made inside a worker (this page's home) to the next
                        # page, homed on the other worker but for the last page; its
                        # POST goes to alternating ports (forwarded when not the home).
                        target = pages[(i + 1) % len(pages)]
                        text = f"from{i}-{n}"
                        assert await page.post(n + i, f"send:{target.sid}:{text}") == (204, "")
                        sent[target.sid].setdefault(f"page{i}", []).append(text)
                    if n % 5 == 0:
                        assert await pages[0].post(n, f"echo {n}") == (200, f"echo {n}")
            for page in pages:
                await page.drain(60)
                assert_ledger(page.got, sent[page.sid])
                assert await page.get(0) == (204, "")  # nothing left, nothing twice
        finally:
            for page in pages:
                await page.close()
        assert await cluster.running.stop(signal.SIGTERM) == 0


async def test_websockets_get_pushes_made_on_another_worker_and_by_a_job(
    redis_server: RedisServer,
) -> None:
    async with start_cluster(redis_server.url) as cluster:
        async with aiohttp.ClientSession() as http:
            pages = [WsPage(http) for _ in range(3)]
            for i, page in enumerate(pages):
                await page.connect(cluster.url(i))  # ports 0, 1, 0
            sender = WsPage(http)
            await sender.connect(cluster.url(1))
            sent: dict[str, list[str]] = {"job": [], "w1": []}
            async with job(redis_server.url, cluster.prefix) as hub:
                for n in range(40):
                    await hub.broadcast(f"job-{n}")
                    sent["job"].append(f"job-{n}")
                    assert sender.ws is not None
                    await sender.ws.send_str(f"bcast:w1-{n}")
                    sent["w1"].append(f"w1-{n}")
                direct = [f"to0-{n}" for n in range(20)]
                for text in direct:
                    await hub.send(pages[0].sid, text)
            for page in pages:
                got = await page.wait_for(80 + (20 if page is pages[0] else 0))
                expected = dict(sent)
                if page is pages[0]:
                    expected["direct"] = direct
                assert_ledger(got, expected)
            for page in [*pages, sender]:
                await page.close()


async def test_redis_stopped_and_restarted_mid_test(persistent_redis: RedisServer) -> None:
    """An outage: workers keep running, buffer, reconnect; nothing lost or doubled."""
    async with start_cluster(persistent_redis.url) as cluster:
        async with aiohttp.ClientSession() as http:
            ws_pages = [WsPage(http) for _ in range(2)]
            for i, page in enumerate(ws_pages):
                await page.connect(cluster.url(i))
            sender = WsPage(http)
            await sender.connect(cluster.url(1))
            poller = PollPage(cluster)
            await poller.open(home=0)
            ws_sent: dict[str, list[str]] = {"w1": []}
            poll_sent: dict[str, list[str]] = {"w1": []}

            async def push(tag: str) -> None:
                assert sender.ws is not None
                ws_sent["w1"].append(tag)
                poll_sent["w1"].append(tag)  # a broadcast reaches the polling page too
                await sender.ws.send_str(f"bcast:{tag}")
                poll_sent["w1"].append(f"p-{tag}")
                await sender.ws.send_str(f"send:{poller.sid}:p-{tag}")

            for n in range(10):
                await push(f"before-{n}")
            for page in ws_pages:
                await page.wait_for(10)
            await poller.drain(10)  # some delivered, the rest still queued in Redis
            await persistent_redis.stop()
            for n in range(10):
                await push(f"during-{n}")  # buffered in worker 1, which keeps serving
            await ws_pages[1].wait_for(20)  # its own page has them at once
            assert len(ws_pages[0].got) == 10  # worker 0's page waits for Redis
            await cluster.running.wait_output("event=backend_disconnected")
            await persistent_redis.start()
            for n in range(10):
                await push(f"after-{n}")
            for page in ws_pages:
                assert_ledger(await page.wait_for(30, timeout=30), ws_sent)
            await poller.drain(60, limit=600)
            assert_ledger(poller.got, poll_sent)
            assert cluster.running.proc.returncode is None
            for pid in [cluster.worker_pid(p) for p in cluster.ports]:
                assert _alive(pid)
            await cluster.running.wait_output("event=backend_reconnected")
            for page in [*ws_pages, sender]:
                await page.close()
            await poller.close()
        assert await cluster.running.stop(signal.SIGTERM) == 0


async def test_a_worker_killed_mid_test(redis_server: RedisServer) -> None:
    """Its WebSocket pages reconnect elsewhere; its polling sessions are taken over there."""
    ttl = 2.0
    async with start_cluster(redis_server.url, worker_ttl=ttl) as cluster:
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        async with aiohttp.ClientSession() as http, job(redis_server.url, cluster.prefix) as hub:
            survivor_page, victim_page = WsPage(http), WsPage(http)
            await survivor_page.connect(cluster.url(0))
            await victim_page.connect(cluster.url(1))
            kept, orphan = PollPage(cluster), PollPage(cluster)
            await kept.open(home=0)
            await orphan.open(home=1)
            orphan_sid = orphan.sid
            before = [f"before-{n}" for n in range(10)]
            for text in before:
                await hub.broadcast(text)
            await kept.drain(10)  # polls alternate: worker 1 serves some of them
            await orphan.drain(10)

            # No poll answer left unacknowledged (one would come again after the kill).
            async with asyncio.timeout(TIMEOUT):
                while await client.hget(f"{cluster.prefix}:s:{orphan_sid}", "fly"):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # state in Redis: polled, with a deadline
            victim = cluster.worker_pid(cluster.ports[1])
            os.kill(victim, signal.SIGKILL)
            async with asyncio.timeout(TIMEOUT):
                await victim_page.closed.wait()
            await victim_page.connect(cluster.url(0))  # the page reconnects, elsewhere
            assert victim_page.sid  # a new session on worker 0

            # The dead worker's polling session is taken over by worker 0 once the
            # dead one is declared dead (its queue is in Redis): the same cookie.
            async with asyncio.timeout(ttl * 5):  # the survivor forgets the dead worker
                while await client.zcard(f"{cluster.prefix}:workers") > 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # state in Redis: polled, with a deadline
            assert (await orphan.post(0, "hello")) == (200, "hello")  # a handler on worker 0
            assert orphan.sid == orphan_sid
            survivor = (await client.zrange(f"{cluster.prefix}:workers", 0, -1))[0]
            assert await client.hget(f"{cluster.prefix}:s:{orphan_sid}", "home") == survivor

            after = [f"after-{n}" for n in range(10)]
            for text in after:
                await hub.broadcast(text)
            await kept.drain(20, ports=[0])
            assert_ledger(kept.got, {"job": before + after})
            await orphan.drain(21, ports=[0])
            # The handler that took it over said so (the ledger app's on_resume).
            assert orphan.got.count(f"resumed:{orphan_sid}") == 1
            orphan.got.remove(f"resumed:{orphan_sid}")
            assert_ledger(orphan.got, {"job": before + after})
            assert_ledger(await survivor_page.wait_for(20), {"job": before + after})
            assert victim_page.got[:10] == before
            assert_ledger(await victim_page.wait_for(20), {"job": before + after})
            for page in (survivor_page, victim_page):
                await page.close()
            for page in (kept, orphan):
                await page.close()
        await client.aclose()
        assert await cluster.running.stop(signal.SIGTERM) == 0
