"""The README's gunicorn command: two workers on one port, one Redis, one session across both.

Every request is a new TCP connection, so the kernel hands each to whichever
worker accepts first; gunicorn's access log (turned on through
``GUNICORN_CMD_ARGS``, the command itself unchanged) names the worker that
served it. Two polling pages of the Backbone demo edit the character in turn:
each edit is pushed to the other page, which must get every one once, in order.
With ``PROMETHEUS_MULTIPROC_DIR`` set, a scrape of ``/metrics`` answered by
either worker counts the sessions of both.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bullet_py.codec.bert import decode, encode
from bullet_py.codec.terms import Atom
from tests.backends.conftest import RedisServer
from tests.deploy.servers import run_gunicorn
from tests.helpers import POLL_HEADERS, POST_HEADERS, cache_buster

pytestmark = pytest.mark.redis

ROUNDS = 40
TIMEOUT = aiohttp.ClientTimeout(total=10)  # a lost push would park a poll for 60 s: fail first
A = Atom


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(kill=True)


def sync(method: str, **props: Any) -> str:
    return encode((A("sync"), (A(method), A("character"), [(A(k), v) for k, v in props.items()])))


def state_of(text: str) -> dict[str, Any]:
    term = decode(text)
    assert term[0] == A("sync") and term[1] == A("ok"), term
    return {str(k): v for k, v in term[2]}


class PollingPage:
    """The original client's long polling, one cookie jar, a new connection per request."""

    def __init__(self, base: str) -> None:
        self.url = base + "/bullet"
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=TIMEOUT,
        )

    @property
    def sid(self) -> str:
        return next(c.value for c in self.http.cookie_jar if c.key == "bullet_sid")

    async def poll(self) -> tuple[int, str]:
        async with self.http.get(self.url, headers=POLL_HEADERS, params=cache_buster()) as resp:
            return resp.status, await resp.text()

    async def post(self, body: str) -> dict[str, Any]:
        async with self.http.post(self.url, data=body.encode(), headers=POST_HEADERS) as resp:
            assert resp.status == 200, resp.status
            return state_of(await resp.text())

    async def pushed(self) -> dict[str, Any]:
        """The next push: a poll that answers 200 (a 204 here would mean nothing came)."""
        status, body = await self.poll()
        assert status == 200, status
        return state_of(body)

    async def close(self) -> None:
        await self.http.close()


# The README's command, and the same with the uvloop worker it names.
@pytest.mark.parametrize("worker_class", [None, "aiohttp.GunicornUVLoopWebWorker"])
async def test_one_session_served_by_both_workers_loses_and_repeats_nothing(
    redis_server: RedisServer, worker_class: str | None
) -> None:
    async with run_gunicorn(redis_server.url, worker_class=worker_class) as server:
        ann, bob = PollingPage(server.base), PollingPage(server.base)
        try:
            for page in (ann, bob):
                assert (await page.poll())[0] == 204  # the session and its cookie
                assert (await page.post(sync("read")))["hp"] == 10  # it comes alive
            to_ann: list[int] = []  # Bob's edits, as Ann's polls bring them
            to_bob: list[str] = []  # Ann's edits, as Bob's polls bring them
            for n in range(1, ROUNDS + 1):
                assert (await bob.post(sync("patch", hp=n)))["hp"] == n
                assert (await ann.post(sync("patch", name=f"ann-{n}")))["name"] == f"ann-{n}"
                to_ann.append((await ann.pushed())["hp"])
                to_bob.append((await bob.pushed())["name"])
            assert to_ann == list(range(1, ROUNDS + 1))
            assert to_bob == [f"ann-{n}" for n in range(1, ROUNDS + 1)]
            # Nothing left over to come twice: the next edit is the next push.
            await bob.post(sync("patch", hp=ROUNDS + 1))
            assert (await ann.pushed())["hp"] == ROUNDS + 1
            ann_sid = ann.sid
        finally:
            await ann.close()
            await bob.close()
        assert await server.stop() == 0  # SIGTERM: a graceful stop; the log is complete

    # Ann's polls and POSTs, by worker: both workers served both kinds.
    ann_requests = [row for row in server.served() if f"bullet_sid={ann_sid}" in row[4]]
    assert len(ann_requests) == 2 * ROUNDS + 2  # all but the first poll, which set it
    for method in ("GET", "POST"):
        workers = {pid for pid, m, *_ in ann_requests if m == method}
        assert workers == set(server.worker_pids), (method, workers, server.worker_pids)


MAX_SESSIONS = 40
MAX_SCRAPES = 60
OPENED = re.compile(r'^bullet_connections_opened_total\{transport="websocket"\} (\S+)$', re.M)


async def _both_idle() -> None:
    """A pause for both workers to finish what the last request gave them and wait in epoll.

    Which worker accepts a connection is a race on the shared socket, which a worker
    still busy with the previous request wins (it is running already, and asyncio's
    accept takes every connection pending): on a loaded machine one worker could take
    every request of the test (it failed so in 2-3 runs of 30 beside two CPU burners).
    Not a synchronisation: nothing to await says a process is idle.
    """
    await asyncio.sleep(0.05)


async def test_a_scrape_answered_by_either_worker_counts_both(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    environ = {"PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    async with run_gunicorn(redis_server.url, environ=environ) as server:
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection for each request
        # No cookie jar: every WebSocket is a page of its own (with one jar, each
        # would carry the last one's cookie and ask to resume its session).
        jar = aiohttp.DummyCookieJar()
        async with aiohttp.ClientSession(
            connector=connector, timeout=TIMEOUT, cookie_jar=jar
        ) as http:
            # WebSocket sessions until both workers have had some (the access log
            # says which: a WebSocket's line is written when it ends). Opened four
            # at a time, all four open at once: one after another, a worker that has
            # just answered tends to accept the next connection too.
            async def open_one() -> aiohttp.ClientWebSocketResponse:
                ws = await http.ws_connect(server.base + "/bullet")
                await ws.send_str(sync("read"))
                assert state_of(await ws.receive_str())["id"] == 1  # the session is open
                return ws

            sessions = 0
            while sessions < MAX_SESSIONS:
                await _both_idle()
                sockets = await asyncio.gather(*(open_one() for _ in range(4)))
                for ws in sockets:
                    await ws.close()
                sessions += 4
                await server.wait_output(r'"GET /bullet HTTP/1.1" 101 ', count=sessions)
                upgraded = {pid for pid, _, _, status, _ in server.served() if status == 101}
                if upgraded == set(server.worker_pids):
                    break
            assert upgraded == set(server.worker_pids), f"{sessions} sessions on one worker"
            # Scrapes until each worker has answered some: every answer counts them all.
            counts: list[float] = []
            while len(counts) < MAX_SCRAPES:
                await _both_idle()
                async with http.get(server.base + "/metrics") as resp:
                    assert resp.status == 200
                    counts.append(float(OPENED.findall(await resp.text())[0]))
                await server.wait_output(r'"GET /metrics HTTP/1.1" 200 ', count=len(counts))
                scraped = [pid for pid, _, target, *_ in server.served() if target == "/metrics"]
                if len(counts) >= 10 and set(scraped) == set(server.worker_pids):
                    break
            assert set(scraped) == set(server.worker_pids), f"{len(counts)} scrapes of one worker"
            assert counts == [sessions] * len(counts)
        assert await server.stop() == 0
