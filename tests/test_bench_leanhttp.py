"""The benchmark's lean HTTP/1.1 client (``bench/leanhttp.py``) reads answers right.

The polling rows of ``bench/run.py`` go through it, so a body cut short or a
connection reused after ``Connection: close`` would make every polling figure
wrong; these check each way an answer can end, against aiohttp's server and a
bare socket, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import leanhttp


@pytest.fixture
async def server() -> AsyncIterator[tuple[URL, list[int]]]:
    """An aiohttp server on 127.0.0.1; the list gets the client port of every request."""
    ports: list[int] = []

    async def length(request: web.Request) -> web.Response:
        body = await request.read()
        response = web.Response(body=b"got:" + body, content_type="text/plain")
        response.set_cookie("sid", "abc", httponly=True)
        return response

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one,", b"two,", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    async def closing(request: web.Request) -> web.Response:
        response = web.Response(text="last")
        response.force_close()
        return response

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204)

    @web.middleware
    async def note_port(request: web.Request, handler: Any) -> web.StreamResponse:
        ports.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        return await handler(request)

    app = web.Application(middlewares=[note_port])
    app.router.add_route("*", "/length", length)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/closing", closing)
    app.router.add_get("/empty", empty)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield URL(f"http://127.0.0.1:{port}"), ports
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _bare_server(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[tuple[URL, leanhttp.Lane]]:
    """A bare TCP server on 127.0.0.1 answering with ``serve``, and a lane to it."""
    bare = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = bare.sockets[0].getsockname()[1]
    lane = leanhttp.Lane("127.0.0.1", port)
    try:
        async with asyncio.timeout(10):
            yield URL(f"http://127.0.0.1:{port}"), lane
    finally:
        lane.close()
        bare.close()
        await bare.wait_closed()


def _head(base: URL, method: str, path: str, length: int | None = None) -> bytes:
    return leanhttp.request_head(method, base / path.lstrip("/"), {"X-Test": "1"}, length)


async def test_each_kind_of_body_is_read_whole_on_one_kept_connection(
    server: tuple[URL, list[int]],
) -> None:
    base, ports = server
    lane = leanhttp.Lane("127.0.0.1", base.port or 0)
    try:
        async with asyncio.timeout(10):
            posted = await lane.request(_head(base, "POST", "/length", 5), b"hello")
            chunked = await lane.request(_head(base, "GET", "/chunked"))
            empty = await lane.request(_head(base, "GET", "/empty"))
    finally:
        lane.close()
    assert (posted.status, posted.body, posted.content_type) == (200, b"got:hello", "text/plain")
    assert posted.cookies and posted.cookies[0].startswith("sid=abc;")
    assert (chunked.status, chunked.body) == (200, b"one,two,three")
    assert (empty.status, empty.body) == (204, b"")
    assert len(set(ports)) == 1  # all three on the same keep-alive connection


async def test_after_connection_close_the_next_request_opens_a_new_connection(
    server: tuple[URL, list[int]],
) -> None:
    base, ports = server
    lane = leanhttp.Lane("127.0.0.1", base.port or 0)
    try:
        async with asyncio.timeout(10):
            last = await lane.request(_head(base, "GET", "/closing"))
            again = await lane.request(_head(base, "POST", "/length", 2), b"hi")
    finally:
        lane.close()
    assert (last.status, last.body) == (200, b"last")
    assert (again.status, again.body) == (200, b"got:hi")
    assert len(ports) == 2 and ports[0] != ports[1]


async def test_a_body_ended_by_the_close_and_a_broken_answer() -> None:
    answers = iter(
        [
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
            b"SMTP ready\r\n\r\n",
        ]
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(next(answers))
        await writer.drain()
        writer.close()

    async with _bare_server(answer) as (base, lane):
        whole = await lane.request(_head(base, "GET", "/"))
        with pytest.raises(leanhttp.HTTPError, match="not an HTTP answer"):
            await lane.request(_head(base, "GET", "/"))
    assert (whole.status, whole.body) == (200, b"until the end")


def test_the_request_head_is_what_the_wire_expects() -> None:
    head = leanhttp.request_head(
        "POST", URL("http://127.0.0.1:8080/bullet?x=1"), {"Cookie": "a=b"}, 3
    )
    assert head == (
        b"POST /bullet?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nCookie: a=b\r\n"
        b"Content-Length: 3\r\n\r\n"
    )


async def test_a_kept_connection_closed_under_a_request_gets_it_sent_again_once() -> None:
    """The first connection answers once, then closes under the second request unanswered
    (cowboy closing an idle connection as the request arrives); the third connection
    closes under its first request, which is not sent again: nothing was reused."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number = connections
        try:
            await reader.readuntil(b"\r\n\r\n")
            if number == 3:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d" % (1, number))
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()

    async with _bare_server(serve) as (base, lane):
        first = await lane.request(_head(base, "GET", "/"))
        second = await lane.request(_head(base, "GET", "/"))
        lane.close()
        with pytest.raises(leanhttp.HTTPError, match="connection closed"):
            await lane.request(_head(base, "GET", "/"))
    assert (first.body, second.body) == (b"1", b"2")
    assert connections == 3
