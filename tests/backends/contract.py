"""What every backend must do, the same way: one test class, run unchanged per backend.

``test_memory.py`` runs it with the in-memory default (one process: every
"worker" below is the same server) and ``test_redis.py`` with two in-process
workers sharing a real redis-server. A :class:`Browser` plays one browser: one
cookie jar, its consecutive requests sent to whichever worker the test names,
as a round-robin balancer without sticky sessions would. Every case checks
that each message arrived once, and in the order its publisher pushed it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from bullet_py import Broker, Connection, Handler, Options, Overflow, Transport, setup
from bullet_py.web.endpoint import BulletEndpoint
from tests.helpers import (
    FAST,
    POLL_HEADERS,
    POST_HEADERS,
    SSE_HEADERS,
    EventStreamReader,
    Recorder,
    cache_buster,
    closes,
    wait_for,
)

Events = list[tuple[str, str, Any]]


class ContractHandler(Recorder):
    """The recorder, plus ``join:G`` to enter a group."""

    async def on_message(self, conn: Connection, message: str) -> str | None:
        if message.startswith("join:"):
            conn.join(message[5:])
            self.events.append(("message", conn.session_id, message))
            return "joined"
        return await super().on_message(conn, message)


@dataclasses.dataclass
class Cluster:
    """The workers of one test: an endpoint and a URL each (the same one, in memory)."""

    endpoints: list[BulletEndpoint]
    urls: list[URL]
    servers: list[Any]
    events: Events

    def url(self, worker: int) -> URL:
        return self.urls[worker % len(self.urls)]

    def endpoint(self, worker: int) -> BulletEndpoint:
        return self.endpoints[worker % len(self.endpoints)]

    def hub(self, worker: int) -> Any:
        return self.endpoint(worker).hub

    def conn(self, session_id: str) -> Connection | None:
        for endpoint in self.endpoints:
            conn = endpoint.registry.get(session_id)
            if conn is not None:
                return conn
        return None

    def sessions(self) -> int:
        return sum(len(endpoint.registry) for endpoint in self.endpoints)

    def parked(self, session_id: str) -> int:
        """Polls parked for ``session_id`` on any worker."""
        total = 0
        for endpoint in self.endpoints:
            store = endpoint.hub.store
            if store is not None:
                total += store.parked(session_id)
            else:
                conn = endpoint.registry.get(session_id)
                total += conn.parked_polls if conn is not None else 0
        return total

    def connections(self) -> int:
        """Client connections the servers hold open."""
        return sum(len(server.runner.server.connections) for server in self.servers)

    def opened(self, session_id: str) -> int:
        return sum(1 for e in self.events if e[0] == "open" and e[1] == session_id)

    def messages(self, session_id: str) -> list[str]:
        return [e[2] for e in self.events if e[0] == "message" and e[1] == session_id]

    def session_of(self, transport: Transport, before: int) -> str:
        """The id of the newest session opened on ``transport`` after ``before`` events."""
        opened = [e[1] for e in self.events[before:] if e[0] == "open" and e[2] is transport]
        assert opened, f"no {transport.value} session opened"
        return opened[-1]


class Browser:
    """One browser: one cookie jar, requests to the worker each call names."""

    def __init__(self, cluster: Cluster, session: aiohttp.ClientSession) -> None:
        self.cluster = cluster
        self.session = session

    @property
    def sid(self) -> str | None:
        for cookie in self.session.cookie_jar:
            if cookie.key == "bullet_sid":
                return cookie.value
        return None

    async def page_socket(self, worker: int) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket of another page: its session cookie is not sent by the next one.

        These clients answer pings only while reading, so a second socket with
        the first one's cookie would find it silent and resume its session.
        """
        ws = await self.session.ws_connect(self.cluster.url(worker))
        self.session.cookie_jar.clear(lambda morsel: morsel.key.startswith("bullet_sid"))
        return ws

    async def poll(self, worker: int) -> tuple[int, str]:
        async with self.session.get(
            self.cluster.url(worker), headers=POLL_HEADERS, params=cache_buster()
        ) as resp:
            return resp.status, await resp.text()

    async def post(self, worker: int, body: str) -> tuple[int, str]:
        async with self.session.post(
            self.cluster.url(worker), data=body.encode(), headers=POST_HEADERS
        ) as resp:
            return resp.status, await resp.text()

    async def open(self, worker: int = 0) -> str:
        """The original client's first GET: 204 at once, with the cookie."""
        status, body = await self.poll(worker)
        assert (status, body) == (204, "")
        assert self.sid is not None
        return self.sid

    async def live(self, home: int) -> str:
        """Open a polling session whose cookie comes back first to worker ``home``."""
        sid = await self.open(home + 1)
        assert await self.post(home, "noreply:claim") == (204, "")
        return sid

    async def drain(
        self, count: int, *, start: int = 0, step: int = 1, limit: int = 400
    ) -> list[str]:
        """Poll workers ``start``, ``start + step``... until ``count`` messages came (bounded)."""
        got: list[str] = []
        for i in range(limit):
            if len(got) >= count:
                break
            status, body = await self.poll(start + i * step)
            if status == 200:
                got.append(body)
            else:
                assert status == 204, status
        return got


def in_publisher_order(got: list[str], sent: dict[str, list[str]]) -> None:
    """Each publisher's messages arrived once each, in the order it pushed them."""
    assert sorted(got) == sorted(m for ms in sent.values() for m in ms)
    for messages in sent.values():
        assert [m for m in got if m in set(messages)] == messages


StartCluster = Callable[..., Awaitable[Cluster]]


BrokerFactory = Callable[..., Broker | None]


class ClusterFixtures:
    """Subclasses provide ``broker_factory`` (a new broker per worker) and ``workers``."""

    workers = 2

    @pytest.fixture
    def broker_factory(self) -> BrokerFactory:
        raise NotImplementedError

    @pytest.fixture
    async def start_cluster(
        self, broker_factory: BrokerFactory, aiohttp_server: Any
    ) -> AsyncIterator[StartCluster]:
        # broker_factory first: its Redis must outlive the servers, which flush on close.
        async def start(
            *,
            handler: Callable[[Events], Handler] = ContractHandler,
            broker: dict[str, Any] | None = None,
            **options: Any,
        ) -> Cluster:
            """``handler(events)`` per session; ``broker``: keywords for each broker."""
            events: Events = []
            endpoints, servers = [], []
            for _ in range(self.workers):
                app = web.Application()
                endpoint = setup(
                    app,
                    "/bullet",
                    lambda: handler(events),
                    options=Options(**{**FAST, **options}),
                    broker=broker_factory(**(broker or {})),
                )
                servers.append(await aiohttp_server(app))
                endpoints.append(endpoint)
            urls = [server.make_url("/bullet") for server in servers]
            return Cluster(endpoints, urls, servers, events)

        yield start

    @pytest.fixture
    async def browser_factory(self) -> AsyncIterator[Callable[[Cluster], Browser]]:
        sessions: list[aiohttp.ClientSession] = []

        def make(cluster: Cluster) -> Browser:
            session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
            sessions.append(session)
            return Browser(cluster, session)

        yield make
        for session in sessions:
            await session.close()


class BackendContract(ClusterFixtures):
    """The behaviours every backend must have."""

    # --- polling sessions across workers -------------------------------------------

    async def test_a_pending_id_from_one_worker_is_claimed_on_another(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster(poll_timeout=30)
        browser = browser_factory(cluster)
        sid = await browser.open(0)
        parked = asyncio.ensure_future(browser.poll(1))
        await wait_for(lambda: cluster.parked(sid) == 1)
        assert await cluster.hub(0).send(sid, "hello é 😀") in (True, False)
        assert await asyncio.wait_for(parked, 5) == (200, "hello é 😀")
        assert cluster.opened(sid) == 1

    async def test_pushes_from_every_worker_reach_a_polling_session_once_in_order(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster(poll_timeout=1.0, session_idle_timeout=30)
        browser = browser_factory(cluster)
        sid = await browser.live(home=1)
        sent: dict[str, list[str]] = {"w0": [], "w1": []}
        for i in range(40):
            worker = i % 2
            message = f"w{worker}-{i}"
            await cluster.hub(worker).send(sid, message)
            sent[f"w{worker}"].append(message)
        got = await browser.drain(40)
        in_publisher_order(got, sent)
        assert await browser.poll(0) == (204, "")  # nothing more, nothing twice

    async def test_posts_alternating_workers_run_in_one_session_in_order(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster(session_idle_timeout=30)
        browser = browser_factory(cluster)
        sid = await browser.open(0)
        replies = [await browser.post(i, f"m{i} x=1&y=2+3") for i in range(20)]
        assert replies == [(200, f"m{i} x=1&y=2+3") for i in range(20)]
        assert cluster.messages(sid) == [f"m{i} x=1&y=2+3" for i in range(20)]
        assert cluster.opened(sid) == 1
        assert cluster.sessions() == 1

    async def test_posts_and_polls_interleaved_across_workers(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster(poll_timeout=1.0, session_idle_timeout=30)
        browser = browser_factory(cluster)
        sid = await browser.live(home=0)
        got: list[str] = []
        for i in range(10):
            await cluster.hub(i).send(sid, f"push{i}")
            assert await browser.post(i + 1, f"post{i}") == (200, f"post{i}")
            got += await browser.drain(1, start=i)
        assert got == [f"push{i}" for i in range(10)]
        assert cluster.messages(sid)[1:] == [f"post{i}" for i in range(10)]

    async def test_an_aborted_poll_on_one_worker_loses_nothing(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster(poll_timeout=30, session_idle_timeout=30)
        browser = browser_factory(cluster)
        sid = await browser.live(home=0)
        before = cluster.connections()
        async with aiohttp.ClientSession(cookies={"bullet_sid": sid}) as other:
            aborted = asyncio.ensure_future(other.get(cluster.url(1), headers=POLL_HEADERS))
            await wait_for(lambda: cluster.parked(sid) == 1)
            aborted.cancel()
        await wait_for(lambda: cluster.connections() <= before)  # the server saw it go
        await cluster.hub(1).send(sid, "M")
        assert await browser.drain(1) == ["M"]

    async def test_the_home_closing_answers_polls_parked_on_any_worker(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster(poll_timeout=30, session_idle_timeout=30)
        browser = browser_factory(cluster)
        sid = await browser.live(home=0)
        parked = asyncio.ensure_future(browser.poll(1))
        await wait_for(lambda: cluster.parked(sid) == 1)
        conn = cluster.conn(sid)
        assert conn is not None
        conn.close()
        assert await asyncio.wait_for(parked, 5) == (204, "")
        await wait_for(lambda: closes(cluster.events, sid) == 1)
        assert await browser.poll(1) == (204, "")
        assert browser.sid != sid  # the cookie named nobody: a new one

    async def test_an_idle_polling_session_closes_once_then_its_cookie_names_nobody(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster(session_idle_timeout=0.5)
        browser = browser_factory(cluster)
        sid = await browser.live(home=1)
        await wait_for(lambda: closes(cluster.events, sid) == 1, timeout=10)
        assert cluster.conn(sid) is None
        assert await browser.poll(0) == (204, "")
        assert browser.sid != sid
        assert closes(cluster.events, sid) == 1

    async def test_polls_on_any_worker_keep_a_session_alive(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster(poll_timeout=0.4, session_idle_timeout=0.8)
        browser = browser_factory(cluster)
        sid = await browser.live(home=0)
        loop = asyncio.get_running_loop()
        end = loop.time() + 2.5
        for _ in range(50):
            if loop.time() > end:
                break
            assert await browser.poll(1) == (204, "")  # never the home
        assert closes(cluster.events, sid) == 0
        assert browser.sid == sid

    async def test_an_unknown_cookie_gets_a_fresh_session_on_any_worker(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster()
        browser = browser_factory(cluster)
        forged: SimpleCookie = SimpleCookie()
        forged["bullet_sid"] = "A" * 32
        forged["bullet_sid"]["path"] = "/bullet"
        browser.session.cookie_jar.update_cookies(forged, response_url=cluster.url(1))
        assert await browser.poll(1) == (204, "")
        assert browser.sid not in (None, "A" * 32)

    async def test_a_cookieless_post_is_one_message_handler(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster()
        browser = browser_factory(cluster)
        assert await browser.post(1, "solo") == (200, "solo")
        assert [e[0] for e in cluster.events] == ["open", "message", "close"]
        assert cluster.sessions() == 0

    @pytest.mark.parametrize(
        ("policy", "expected"),
        [
            (Overflow.DROP_OLDEST, ["m2", "m3", "m4"]),
            (Overflow.DROP_NEWEST, ["m0", "m1", "m2"]),
        ],
    )
    async def test_a_full_polling_queue_applies_the_policy(
        self,
        start_cluster: StartCluster,
        browser_factory: Any,
        caplog: pytest.LogCaptureFixture,
        policy: Overflow,
        expected: Any,
    ) -> None:
        caplog.set_level(logging.WARNING, logger="bullet_py")
        cluster = await start_cluster(
            outbox_max_messages=3, overflow=policy, poll_timeout=0.5, session_idle_timeout=30
        )
        browser = browser_factory(cluster)
        sid = await browser.live(home=0)
        for i in range(5):
            await cluster.hub(1).send(sid, f"m{i}")  # one publisher, not the home: in order
        # Both extra pushes met the bound (logged), so all five were applied.
        await wait_for(lambda: caplog.text.count("event=queue_overflow") == 2)
        got = await browser.drain(3)
        assert got == expected, got
        assert await browser.poll(1) == (204, "")

    async def test_a_full_polling_queue_closes_the_session_under_close_policy(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster(
            outbox_max_messages=3, overflow=Overflow.CLOSE, session_idle_timeout=30
        )
        browser = browser_factory(cluster)
        sid = await browser.live(home=1)
        for i in range(5):
            await cluster.hub(0).send(sid, f"m{i}")
        await wait_for(lambda: closes(cluster.events, sid) == 1)
        assert ("close", sid, 1008) in cluster.events

    # --- streams: pushes made on another worker --------------------------------------

    async def test_broadcasts_from_every_worker_reach_websockets_on_every_worker(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster()
        browser = browser_factory(cluster)
        sockets = [await browser.page_socket(i) for i in range(2)]
        await wait_for(lambda: cluster.sessions() == 2)
        sent: dict[str, list[str]] = {"w0": [], "w1": []}
        for i in range(30):
            worker = i % 2
            message = f"b{worker}-{i}"
            await cluster.hub(worker).broadcast(message)
            sent[f"w{worker}"].append(message)
        for ws in sockets:
            got = [(await ws.receive(timeout=5)).data for _ in range(30)]
            in_publisher_order(got, sent)
            await ws.close()

    async def test_a_group_broadcast_reaches_its_members_on_every_worker_only(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster()
        browser = browser_factory(cluster)
        sockets = [await browser.page_socket(i) for i in range(3)]
        for ws in sockets[:2]:
            await ws.send_str("join:blue")
            assert (await ws.receive(timeout=5)).data == "joined"
        await cluster.hub(1).broadcast("to blue", group="blue")
        await cluster.hub(1).broadcast("to all")  # same publisher: order is defined
        for ws in sockets[:2]:
            assert [(await ws.receive(timeout=5)).data for _ in range(2)] == ["to blue", "to all"]
        assert (await sockets[2].receive(timeout=5)).data == "to all"
        for ws in sockets:
            await ws.close()

    async def test_sends_and_info_reach_a_websocket_session_on_another_worker(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster()
        browser = browser_factory(cluster)
        ws = await browser.session.ws_connect(cluster.url(0))
        await wait_for(lambda: cluster.sessions() == 1)
        sid = cluster.session_of(Transport.WEBSOCKET, 0)
        for i in range(20):
            await cluster.hub(1).send(sid, f"s{i}")
        await cluster.hub(1).info(sid, "tick")
        got = [(await ws.receive(timeout=5)).data for _ in range(21)]
        assert got == [f"s{i}" for i in range(20)] + ["info:tick"]
        assert ("info", sid, "tick") in cluster.events
        await ws.close()

    async def test_an_event_stream_receives_pushes_made_on_another_worker(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        cluster = await start_cluster(stream_lifetime=30)
        browser = browser_factory(cluster)
        async with browser.session.get(cluster.url(0), headers=SSE_HEADERS) as stream:
            assert stream.status == 200
            await wait_for(lambda: cluster.sessions() == 1)
            sid = cluster.session_of(Transport.EVENTSOURCE, 0)
            for i in range(10):
                await cluster.hub(i).send(sid, f"e{i}")
            reader = EventStreamReader(stream)
            got = [await reader.next_event() for _ in range(10)]
        assert sorted(got, key=lambda m: int(m[1:])) == [f"e{i}" for i in range(10)]
        assert [m for m in got if int(m[1:]) % 2 == 0] == [f"e{i}" for i in range(0, 10, 2)]

    async def test_an_event_stream_pages_posts_reach_its_session_from_any_worker(
        self, start_cluster: StartCluster, browser_factory: Any
    ) -> None:
        """The original client's event-stream transport sends by POST, cookie attached."""
        cluster = await start_cluster(stream_lifetime=30)
        browser = browser_factory(cluster)
        async with browser.session.get(cluster.url(0), headers=SSE_HEADERS) as stream:
            assert stream.status == 200
            await wait_for(lambda: cluster.sessions() == 1)
            sid = cluster.session_of(Transport.EVENTSOURCE, 0)
            assert browser.sid == sid
            replies = [await browser.post(i, f"es{i}") for i in range(6)]
        assert replies == [(200, f"es{i}") for i in range(6)]
        assert cluster.messages(sid) == [f"es{i}" for i in range(6)]
        assert cluster.opened(sid) == 1

    async def test_a_push_to_nobody_is_harmless(self, start_cluster: StartCluster) -> None:
        cluster = await start_cluster()
        assert await cluster.hub(0).send("N" * 32, "lost") is False
        assert await cluster.hub(1).info("N" * 32, {"x": 1}) is False
        assert await cluster.hub(0).broadcast("to nobody") == 0
