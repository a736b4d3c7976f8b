"""Sessions that outlive their stream and their worker (docs/sessions.md, "Several workers").

Real worker processes (``examples/cluster.py --serve``, the ledger app of
``worker_app.py``) around a real redis-server; the clients are raw: a
WebSocket or event-stream client that counts what it receives and reports the
count when it reconnects (as the project's ``js/bullet.js`` does), and a
polling client that counts nothing (the original client). Each case keeps a
ledger: every message pushed arrives once, in the order it was pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bullet_py.backends.redis.bus import id_after
from tests.backends.conftest import RedisServer
from tests.backends.test_cluster import LEDGER, TIMEOUT, job
from tests.helpers import POLL_HEADERS, POST_HEADERS, cache_buster
from tests.processes import ROOT, Running, free_port, run_script

pytestmark = pytest.mark.redis

WORKER_TTL = 2.0
PROTOCOLS = ("bullet.resumed", "bullet.fresh")
MARKERS = ("sid:", "resumed:")  # what the ledger app says of itself, not pushes


# --- workers, one process each (so one can be stopped and started again) ---------------------


class Workers:
    """Worker processes sharing one Redis prefix, each on its own port."""

    def __init__(self, redis_url: str, prefix: str, count: int) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.ports = [free_port() for _ in range(count)]
        self.running: dict[int, Running] = {}
        self.gone_output: list[str] = []
        self._contexts: dict[int, contextlib.AbstractAsyncContextManager[Running]] = {}

    def url(self, i: int, query: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[i % len(self.ports)]}/bullet{query}"

    async def start(self, i: int) -> None:
        port = self.ports[i]
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join((str(ROOT / "src"), str(ROOT)))
        try:
            context = run_script(
                "cluster.py",
                "--serve",
                "--redis",
                self.redis_url,
                "--prefix",
                self.prefix,
                "--worker-ttl",
                str(WORKER_TTL),
                "--app",
                LEDGER,
                "--log-level",
                "INFO",
                port=port,
            )
            self.running[port] = await context.__aenter__()
            self._contexts[port] = context
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved

    async def stop(self, i: int, sig: int = signal.SIGTERM) -> int:
        port = self.ports[i]
        status = await self.running[port].stop(sig, timeout=30)
        self.gone_output.extend(f"[{port} old] {line}" for line in self.running[port].output)
        await self._contexts.pop(port).__aexit__(None, None, None)
        del self.running[port]
        return status

    def output(self) -> list[str]:
        return self.gone_output + [
            f"[{port}] {line}" for port, running in self.running.items() for line in running.output
        ]

    async def close(self) -> None:
        for port in list(self._contexts):
            await self._contexts.pop(port).__aexit__(None, None, None)


_prefixes = iter(range(10**6))


@contextlib.asynccontextmanager
async def workers(redis_url: str, count: int = 2) -> AsyncIterator[Workers]:
    group = Workers(redis_url, f"r{os.getpid()}x{next(_prefixes)}", count)
    try:
        for i in range(count):
            await group.start(i)
        yield group
    finally:
        await group.close()


def pages_client() -> aiohttp.ClientSession:
    """Pages that each send their own cookie (none shared through a jar)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())


def drop(ws_or_response: Any) -> None:
    """Vanish without a close frame or a FIN exchange (a reset)."""
    connection = getattr(ws_or_response, "_response", ws_or_response).connection
    connection.transport.abort()


@contextlib.asynccontextmanager
async def parked_in_redis(redis_url: str, prefix: str, sid: str) -> AsyncIterator[None]:
    """On leaving: wait until the session's home parked it (its bus entry says so)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        last = await client.xrevrange(f"{prefix}:bus", count=1)
        position = last[0][0] if last else "0-0"
        yield
        async with asyncio.timeout(TIMEOUT):
            while await client.hget(f"{prefix}:s:{sid}", "pk") != "1":
                # park.lua appends a wake entry once the session is parked
                reply = await client.xread({f"{prefix}:bus": position}, block=1000, count=100)
                for _stream, entries in reply or ():
                    position = entries[-1][0]
    finally:
        await client.aclose()


def pushes(got: list[str]) -> list[str]:
    return [m for m in got if not m.startswith(MARKERS)]


# --- a counting WebSocket client ----------------------------------------------------------------


class CountingWs:
    """A page of the project's client on a WebSocket: counts, reports the count, reconnects."""

    def __init__(self, http: aiohttp.ClientSession, group: Workers) -> None:
        self.http = http
        self.group = group
        self.sid = ""
        self.got: list[str] = []
        self.protocols: list[str | None] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.new = asyncio.Event()
        self.ended = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, i: int) -> str | None:
        headers = {"Cookie": f"bullet_sid={self.sid}"} if self.sid else {}
        ws = await self.http.ws_connect(
            self.group.url(i, f"?bullet_seen={len(self.got)}"),
            protocols=PROTOCOLS,
            headers=headers,
        )
        self.ws = ws
        self.ended.clear()
        self.protocols.append(ws.protocol)
        if not self.sid:
            first = await ws.receive_str(timeout=TIMEOUT)
            assert first.startswith("sid:")
            self.sid = first[4:]
            self.got.append(first)
        self._reader = asyncio.ensure_future(self._read(ws))
        return ws.protocol

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.got.append(msg.data)
                    self.new.set()
        finally:
            self.ended.set()
            self.new.set()

    async def wait_for(self, count: int, timeout: float = TIMEOUT) -> list[str]:
        """Until ``count`` pushes (markers aside) came; the connection must stay up."""
        async with asyncio.timeout(timeout):
            while len(pushes(self.got)) < count:
                self.new.clear()
                await self.new.wait()
        return pushes(self.got)

    async def wait_seen(self, text: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            while text not in self.got:
                self.new.clear()
                await self.new.wait()

    async def follow(self, count: int, ports: list[int], timeout: float = 60) -> list[str]:
        """Until ``count`` pushes came, reconnecting (to the next port) whenever it ends."""
        turn = 0
        async with asyncio.timeout(timeout):
            while len(pushes(self.got)) < count:
                if self.ended.is_set() or self.ws is None or self.ws.closed:
                    turn += 1
                    with contextlib.suppress(aiohttp.ClientError, OSError):
                        await self.connect(ports[turn % len(ports)])
                    if self.ended.is_set() or self.ws is None or self.ws.closed:
                        await asyncio.sleep(0.05)  # a worker restarting: the client's backoff
                    continue
                self.new.clear()
                await self.new.wait()
        return pushes(self.got)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


# --- an event-stream client ---------------------------------------------------------------------


class Stream:
    """One event stream's events (data lines), read as they come."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[str] = []
        self.new = asyncio.Event()
        self.ended = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        data: list[str] = []
        try:
            async for raw in self.response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data: "):
                    data.append(line[6:])
                elif not line and data:
                    self.events.append("\n".join(data))
                    data = []
                    self.new.set()
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            self.ended.set()
            self.new.set()

    async def wait_for(self, count: int) -> list[str]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.events) < count:
                self.new.clear()
                await self.new.wait()
        return self.events

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self.response.close()


async def open_stream(
    http: aiohttp.ClientSession, url: str, sid: str = ""
) -> tuple[aiohttp.ClientResponse, str]:
    headers = {"Accept": "text/event-stream"}
    if sid:
        headers["Cookie"] = f"bullet_sid={sid}"
    response = await http.get(url, headers=headers)
    cookie = response.cookies.get("bullet_sid")
    return response, cookie.value if cookie is not None else sid


class CountingEs:
    """A page of the project's client on an event stream: counts, reports, reconnects."""

    def __init__(self, http: aiohttp.ClientSession, group: Workers) -> None:
        self.http = http
        self.group = group
        self.sid = ""
        self.got: list[str] = []
        self.protocols: list[str] = []  # what its first event said: fresh or resumed
        self.new = asyncio.Event()

    async def _run(self, i: int) -> None:
        """One stream, read to its end (or its failure)."""
        headers = {"Accept": "text/event-stream"}
        if self.sid:
            headers["Cookie"] = f"bullet_sid={self.sid}"
        url = self.group.url(i, f"?bullet_seen={len(self.got)}")
        async with self.http.get(url, headers=headers) as response:
            if response.status != 200:
                return
            cookie = response.cookies.get("bullet_sid")
            if cookie is not None and not self.sid:
                self.sid = cookie.value
            event, data = "", []
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line and data:
                    if event == "bullet":
                        self.protocols.append(data[0])
                    else:
                        self.got.append("\n".join(data))
                    event, data = "", []
                    self.new.set()

    async def connect(self, i: int) -> None:
        """The first stream: reading goes on in the background until ``follow``."""
        self._reader = asyncio.ensure_future(self._run(i))
        async with asyncio.timeout(TIMEOUT):
            while not self.protocols:
                self.new.clear()
                await self.new.wait()

    async def follow(self, count: int, ports: list[int], timeout: float = 60) -> list[str]:
        """Until ``count`` pushes came, opening the next stream whenever one ends."""
        turn = 0
        async with asyncio.timeout(timeout):
            while len(pushes(self.got)) < count:
                if self._reader.done():
                    if self._reader.exception() is not None or not self.new.is_set():
                        await asyncio.sleep(0.05)  # a worker away: the client's reconnection delay
                    turn += 1
                    self._reader = asyncio.ensure_future(self._run(ports[turn % len(ports)]))
                    continue
                self.new.clear()
                waiting = asyncio.ensure_future(self.new.wait())
                await asyncio.wait((waiting, self._reader), return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
        return pushes(self.got)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, OSError):
            await self._reader


# --- a polling client (the original client: it counts nothing) --------------------------------


class Poller:
    def __init__(self, group: Workers) -> None:
        self.group = group
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.got: list[str] = []
        self.turn = 0

    @property
    def sid(self) -> str:
        for cookie in self.http.cookie_jar:
            if cookie.key == "bullet_sid":
                return cookie.value
        return ""

    async def get(self, i: int) -> tuple[int, str]:
        async with self.http.get(
            self.group.url(i), headers=POLL_HEADERS, params=cache_buster()
        ) as resp:
            return resp.status, await resp.text()

    async def post(self, i: int, body: str) -> tuple[int, str]:
        async with self.http.post(
            self.group.url(i), data=body.encode(), headers=POST_HEADERS
        ) as resp:
            return resp.status, await resp.text()

    async def follow(self, count: int, timeout: float = 60) -> list[str]:
        """Poll alternating workers until ``count`` pushes came; a worker away is skipped."""
        async with asyncio.timeout(timeout):
            while len(pushes(self.got)) < count:
                self.turn += 1
                try:
                    status, body = await self.get(self.turn)
                except (aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.05)  # a worker restarting: the client's backoff
                    continue
                if status == 200:
                    self.got.append(body)
                else:
                    assert status in (204, 503), status
        return pushes(self.got)

    async def close(self) -> None:
        await self.http.close()


# --- another worker, its home alive ------------------------------------------------------------


async def test_a_websocket_resumes_on_the_other_worker_and_its_handler_stays_home(
    redis_server: RedisServer,
) -> None:
    async with workers(redis_server.url) as group, pages_client() as http:
        page = CountingWs(http, group)
        assert await page.connect(0) == "bullet.fresh"
        async with job(redis_server.url, group.prefix) as hub:
            for n in range(3):
                await hub.send(page.sid, f"before-{n}")
            await page.wait_for(3)
            assert page.ws is not None
            drop(page.ws)
            await page.ended.wait()
            away = [f"away-{n}" for n in range(10)]
            for text in away:
                await hub.send(page.sid, text)
            # Pushes from the home worker itself, for its own session.
            assert await page.connect(1) == "bullet.resumed"  # same cookie, the other worker
            assert await page.wait_for(13) == [*[f"before-{n}" for n in range(3)], *away]
            # What the client sends on worker 1 runs in the handler on worker 0...
            assert page.ws is not None
            await page.ws.send_str("echo-1")
            assert (await page.wait_for(14))[-1] == "echo-1"
            # ...which pushes to its own session: the view on worker 1 writes it.
            await page.ws.send_str(f"send:{page.sid}:from-home")
            assert (await page.wait_for(15))[-1] == "from-home"
            await hub.send(page.sid, "after")
            assert (await page.wait_for(16))[-1] == "after"
        assert [m for m in page.got if m.startswith(MARKERS)] == [f"sid:{page.sid}"]  # one on_open
        home = group.running[group.ports[0]]
        assert not any(page.sid in line for line in home.output)
        await page.close()  # a close frame, on worker 1: the session ends, on worker 0
        await home.wait_output(f"ledger_closed {page.sid}")


async def test_a_view_keeps_the_websocket_rules_a_message_too_big_ends_the_session(
    redis_server: RedisServer,
) -> None:
    async with workers(redis_server.url) as group, pages_client() as http:
        page = CountingWs(http, group)
        await page.connect(0)
        assert page.ws is not None
        drop(page.ws)
        await page.ended.wait()
        assert await page.connect(1) == "bullet.resumed"
        assert page.ws is not None
        await page.ws.send_str("x" * (1_048_576 + 1))  # one character over the default bound
        await page.ended.wait()
        assert page.ws.close_code == 1009
        await group.running[group.ports[0]].wait_output(f"ledger_closed {page.sid}")


async def test_an_event_stream_resumes_on_the_other_worker_and_cr_falls_back_to_polling(
    redis_server: RedisServer,
) -> None:
    async with workers(redis_server.url) as group, pages_client() as http:
        response, sid = await open_stream(http, group.url(0))
        assert response.status == 200 and sid
        first = Stream(response)
        async with job(redis_server.url, group.prefix) as hub:
            await hub.send(sid, "one")
            assert await first.wait_for(1) == ["one"]
            drop(response)
            await first.close()
            for text in ("two", "three", "with\rcr", "four"):
                await hub.send(sid, text)
            response, same = await open_stream(http, group.url(1), sid)
            assert response.status == 200 and same == sid
            second = Stream(response)
            await second.ended.wait()  # it ends before the message it cannot carry
            assert second.events == ["two", "three"]
            await second.close()
            # Refused on either worker now (406): the original client falls back to polling.
            for i in (0, 1):
                response, _ = await open_stream(http, group.url(i), sid)
                assert response.status == 406
                response.close()
            poller = Poller(group)
            poller.http.cookie_jar.update_cookies({"bullet_sid": sid})
            try:
                assert await poller.follow(2) == ["with\rcr", "four"]
                # A POST on either worker reaches the handler on worker 0.
                assert await poller.post(1, "echo") == (200, "echo")
            finally:
                await poller.close()


async def test_a_silent_websocket_on_its_home_gives_way_to_its_client_on_the_other_worker(
    redis_server: RedisServer,
) -> None:
    """The commonest drop is silent: the old WebSocket on worker 0 stays open but
    answers nothing (never read, so no pong) while its client reconnects, with
    its cookie and count, to worker 1. Worker 1 asks worker 0 over the bus to
    probe the stream holding the session; worker 0 finds it dead within
    ``resume_probe_timeout``, drops it and parks the session, and the reconnect
    resumes it: what the dead socket was sent comes again, once, in order."""
    async with workers(redis_server.url) as group, pages_client() as http:
        silent = await http.ws_connect(group.url(0, "?bullet_seen=0"), protocols=PROTOCOLS)
        try:
            first = await silent.receive_str(timeout=TIMEOUT)
            assert first.startswith("sid:")
            sid = first[4:]
            sent = [f"m-{n}" for n in range(5)]
            async with job(redis_server.url, group.prefix) as hub:
                for message in sent:
                    await hub.send(sid, message)  # to the silent socket
                page = CountingWs(http, group)
                page.sid, page.got = sid, [first]  # its client received only its first message
                assert await page.connect(1) == "bullet.resumed"
                assert await page.wait_for(len(sent)) == sent
                await hub.send(sid, "later")
                assert await page.wait_for(len(sent) + 1) == [*sent, "later"]
            await page.close()
        finally:
            await silent.close()
        assert any("session_parked" in line for line in group.output())


# --- the home worker killed ---------------------------------------------------------------------


async def test_a_session_whose_home_was_killed_is_taken_over_and_loses_nothing(
    redis_server: RedisServer,
) -> None:
    async with workers(redis_server.url) as group, pages_client() as http:
        page = CountingWs(http, group)
        assert await page.connect(0) == "bullet.fresh"
        sent: list[str] = []
        async with job(redis_server.url, group.prefix) as hub:
            for n in range(3):
                sent.append(f"before-{n}")
                await hub.send(page.sid, sent[-1])
            await page.wait_for(3)
            assert page.ws is not None
            async with parked_in_redis(redis_server.url, group.prefix, page.sid):
                drop(page.ws)
                await page.ended.wait()
                # Its home notices the drop and parks the session in Redis (a
                # session still attached to a worker that dies is not taken over).
            for n in range(5):
                sent.append(f"queued-{n}")
                await hub.send(page.sid, sent[-1])
            assert await group.stop(0, signal.SIGKILL) == -signal.SIGKILL
            for n in range(5):
                sent.append(f"meanwhile-{n}")  # nobody runs the session now
                await hub.send(page.sid, sent[-1])
            # The client reconnects to worker 1 (again, if its first try finds the
            # home not yet known dead): worker 1 takes the session over.
            assert await page.follow(len(sent), ports=[1]) == sent
            await page.wait_seen(f"resumed:{page.sid}")
            assert page.protocols[-1] == "bullet.resumed"
            after = page.got.index(f"resumed:{page.sid}")
            assert pushes(page.got[:after]) == sent  # the queue first, then on_resume's
            sent.append("after")
            await hub.send(page.sid, "after")
            assert await page.wait_for(len(sent)) == sent
            assert page.ws is not None
            await page.ws.send_str("echo-2")  # the new handler, on worker 1
            assert (await page.wait_for(len(sent) + 1))[-1] == "echo-2"
        await page.close()


async def test_a_broadcast_its_dead_home_made_is_not_applied_twice_by_the_new_home(
    redis_server: RedisServer,
) -> None:
    """A home applies its own broadcasts to its sessions when it makes them (a parked
    session's queue included), then writes them to the bus. The worker taking over
    after the home died reads the bus back from the park: it must skip those."""
    async with workers(redis_server.url) as group, pages_client() as http:
        page = CountingWs(http, group)
        assert await page.connect(0) == "bullet.fresh"
        other = CountingWs(http, group)  # another page on worker 0, to broadcast from there
        assert await other.connect(0) == "bullet.fresh"
        assert page.ws is not None and other.ws is not None
        async with parked_in_redis(redis_server.url, group.prefix, page.sid):
            drop(page.ws)
            await page.ended.wait()
        await other.ws.send_str("bcast:own")  # hub.broadcast on worker 0
        assert await other.wait_for(1) == ["own"]
        await read_past(redis_server.url, group.prefix)  # its bus entry is written and read
        assert await group.stop(0, signal.SIGKILL) == -signal.SIGKILL
        async with job(redis_server.url, group.prefix) as hub:
            await hub.send(page.sid, "meanwhile")
            assert await page.follow(2, ports=[1]) == ["own", "meanwhile"]
            await page.wait_seen(f"resumed:{page.sid}")
            await hub.send(page.sid, "after")
            assert await page.wait_for(3) == ["own", "meanwhile", "after"]
        await page.close()
        await other.close()


async def read_past(redis_url: str, prefix: str) -> None:
    """Until every worker's heartbeat has recorded a bus position at or past the bus's end.

    The record is written once a heartbeat (lua/beat.lua) and nothing announces
    it, so this looks again every 50 ms (bounded by ``TIMEOUT``).
    """
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        last = await client.xrevrange(f"{prefix}:bus", count=1)
        end = last[0][0] if last else "0-0"
        async with asyncio.timeout(TIMEOUT):
            while True:
                ids = await client.zrange(f"{prefix}:workers", 0, -1)
                positions = [await client.get(f"{prefix}:wpos:{w}") for w in ids]
                if ids and all(p is not None and not id_after(end, p) for p in positions):
                    return
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def test_a_session_attached_when_its_home_is_killed_is_taken_over_with_a_reset(
    redis_server: RedisServer,
) -> None:
    """SIGKILL with the stream open: the session was never parked. The client's
    reconnect (at once, on the other worker) waits until the home is declared
    dead, then that worker takes the session over: the pushes made since the
    dead home's last heartbeat come, once, in order, after a reset (the dead
    process may have held some in flight); a fresh handler gets on_resume."""
    async with workers(redis_server.url) as group, pages_client() as http:
        page = CountingWs(http, group)
        assert await page.connect(0) == "bullet.fresh"
        sent: list[str] = []
        async with job(redis_server.url, group.prefix) as hub:
            for n in range(3):
                sent.append(f"before-{n}")
                await hub.send(page.sid, sent[-1])
            assert await page.wait_for(3) == sent
            await read_past(redis_server.url, group.prefix)  # worker 0 applied them, and said so
            assert await group.stop(0, signal.SIGKILL) == -signal.SIGKILL
            await page.ended.wait()
            meanwhile = [f"meanwhile-{n}" for n in range(5)]
            for message in meanwhile:
                await hub.send(page.sid, message)  # nobody runs the session now
            got = await page.follow(len(sent) + len(meanwhile), ports=[1])
            assert got == sent + meanwhile  # nothing lost, nothing twice, in order
            await page.wait_seen(f"resumed:{page.sid}")
            assert page.protocols[-1] == "bullet.fresh"  # the count starts again: told so
            assert await page.follow(len(sent) + len(meanwhile), ports=[1]) == got
            sent += meanwhile
            sent.append("after")
            await hub.send(page.sid, "after")
            assert await page.wait_for(len(sent)) == sent
            assert page.ws is not None
            await page.ws.send_str("echo-1")  # the new handler, on worker 1
            assert (await page.wait_for(len(sent) + 1))[-1] == "echo-1"
        await page.close()
        taken = [line for line in group.output() if "session_taken_over" in line]
        assert len(taken) == 1, taken


async def test_an_event_stream_attached_when_its_home_is_killed_is_taken_over_with_a_reset(
    redis_server: RedisServer,
) -> None:
    async with workers(redis_server.url) as group, pages_client() as http:
        stream = CountingEs(http, group)
        await stream.connect(0)
        assert stream.protocols == ["fresh"] and stream.sid
        sent = [f"before-{n}" for n in range(3)]
        async with job(redis_server.url, group.prefix) as hub:
            for message in sent:
                await hub.send(stream.sid, message)
            assert await stream.follow(len(sent), ports=[0]) == sent
            await read_past(redis_server.url, group.prefix)
            assert await group.stop(0, signal.SIGKILL) == -signal.SIGKILL
            meanwhile = [f"meanwhile-{n}" for n in range(5)]
            for message in meanwhile:
                await hub.send(stream.sid, message)
            assert await stream.follow(len(sent) + len(meanwhile), ports=[1]) == sent + meanwhile
            assert stream.protocols[-1] == "fresh"  # the count starts again: told so
        await stream.close()
        taken = [line for line in group.output() if "session_taken_over" in line]
        assert len(taken) == 1, taken


async def test_a_parked_session_nobody_comes_back_for_is_ended_by_another_worker(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_IDLE_TIMEOUT", "1")
    async with workers(redis_server.url) as group, pages_client() as http:
        page = CountingWs(http, group)
        await page.connect(0)
        assert page.ws is not None
        async with parked_in_redis(redis_server.url, group.prefix, page.sid):
            drop(page.ws)
            await page.ended.wait()
        assert await group.stop(0, signal.SIGKILL) == -signal.SIGKILL
        # Worker 1 takes it over once worker 0 is known dead and the session has
        # been idle past its timeout: a fresh handler, on_resume, then on_close.
        survivor = group.running[group.ports[1]]
        await survivor.wait_output(f"ledger_closed {page.sid}", timeout=TIMEOUT)
        await survivor.wait_output("event=orphaned_sessions_ended")
        assert sum(f"ledger_closed {page.sid}" in line for line in survivor.output) == 1
        # Its client coming back now gets a fresh session.
        page.got.clear()
        assert await page.connect(1) == "bullet.fresh"


# --- a rolling restart ---------------------------------------------------------------------------


async def test_a_rolling_restart_loses_nothing_on_any_transport(
    redis_server: RedisServer,
) -> None:
    async with workers(redis_server.url) as group, pages_client() as http:
        pages = [CountingWs(http, group) for _ in range(2)]
        for i, page in enumerate(pages):
            assert await page.connect(i) == "bullet.fresh"
        stream = CountingEs(http, group)
        await stream.connect(0)
        assert stream.protocols == ["fresh"] and stream.sid
        poller = Poller(group)
        assert (await poller.get(0))[0] == 204
        assert await poller.post(0, "hello") == (200, "hello")  # its home: worker 0
        sids = [page.sid for page in pages] + [stream.sid, poller.sid]
        sent: list[str] = []
        total = 120
        restarted = asyncio.Event()

        async def push_steadily() -> None:
            async with job(redis_server.url, group.prefix) as hub:
                for n in range(total):
                    sent.append(f"m{n}")
                    for sid in sids:
                        await hub.send(sid, f"m{n}")
                    if n >= total // 2:
                        await restarted.wait()  # the second half after both restarts
                    await asyncio.sleep(0.02)  # a steady stream, not a burst

        async def restart_one_at_a_time() -> None:
            for i in range(len(group.ports)):
                assert await group.stop(i, signal.SIGTERM) == 0
                await group.start(i)
            restarted.set()

        following = [
            asyncio.ensure_future(page.follow(total, ports=[0, 1], timeout=90)) for page in pages
        ]
        following.append(asyncio.ensure_future(stream.follow(total, ports=[1, 0], timeout=90)))
        following.append(asyncio.ensure_future(poller.follow(total, timeout=90)))
        try:
            await asyncio.gather(push_steadily(), restart_one_at_a_time())
            got = await asyncio.gather(*following)
        finally:
            for task in following:
                task.cancel()
            await poller.close()
            await stream.close()
            for page in pages:
                await page.close()
        expected = [f"m{n}" for n in range(total)]
        for ledger in got:
            assert ledger == expected  # once each, in order
        for page in pages:  # moved at least once, resumed each time, never a fresh session
            assert page.protocols[0] == "bullet.fresh" and len(page.protocols) >= 2
            assert set(page.protocols[1:]) == {"bullet.resumed"}
        assert f"resumed:{sids[-1]}" in poller.got  # the polling session was taken over
        assert len(stream.protocols) >= 2 and set(stream.protocols[1:]) == {"resumed"}


async def test_a_view_writes_a_queued_lone_surrogate_as_u_fffd_and_goes_on(
    redis_server: RedisServer,
) -> None:
    """A message read back from Redis holding a lone surrogate (an application's own
    string): the view on the other worker sends U+FFFD for it, then the rest. It used
    to raise in send_str, put the message back and end the stream, every time."""
    async with workers(redis_server.url) as group, pages_client() as http:
        page = CountingWs(http, group)
        await page.connect(0)
        assert page.ws is not None
        drop(page.ws)
        await page.ended.wait()
        async with job(redis_server.url, group.prefix) as hub:
            await hub.send(page.sid, "a\ud800b")
            await hub.send(page.sid, "after")
            assert await page.connect(1) == "bullet.resumed"
            assert await page.wait_for(2) == ["a\ufffdb", "after"]
        await page.close()
