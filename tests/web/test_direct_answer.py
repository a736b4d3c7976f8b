"""A POST's answer written from a prebuilt head: aiohttp's bytes, and only where nothing could tell.

Each test sends the same requests to an endpoint that answers directly and
to one that cannot (a middleware, a signal receiver, a CORS allow-list, an
HTTP/1.0 or closing client) and compares what comes back on the wire, so an
aiohttp that changes its answers, or the calls it makes on a response, fails
here.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from aiohttp import web

from bullet_py.web import answer, parkedpoll, polling
from tests.helpers import POLL_HEADERS, POST_HEADERS, make_app, wait_for

_DATE = re.compile(rb"\r\nDate: ([^\r]*)\r\n")


def _post(body: bytes, *, version: str = "1.1", extra: dict[str, str] | None = None) -> bytes:
    lines = [f"POST /bullet HTTP/{version}", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in {**POST_HEADERS, **(extra or {})}.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _answers(port: int, requests: bytes, count: int) -> list[bytes]:
    """``count`` whole answers to ``requests`` (written at once), as raw bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(requests)
        out = []
        for _ in range(count):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
            body = await asyncio.wait_for(reader.readexactly(int(length[1]) if length else 0), 5)
            out.append(head + body)
        return out
    finally:
        writer.close()


def _undated(raw: bytes) -> bytes:
    """The answer with its ``Date`` value blanked, after checking it is a current HTTP date."""
    found = _DATE.search(raw)
    assert found is not None, raw
    when = parsedate_to_datetime(found[1].decode()).timestamp()
    assert abs(when - time.time()) < 5
    return _DATE.sub(b"\r\nDate: -\r\n", raw)


@pytest.fixture
def direct_made(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies of every answer written directly, in order: a DirectAnswer made, or a
    parked poll's answer written off aiohttp (web/parkedpoll.py, the same bytes)."""
    made: list[bytes] = []

    class Counted(answer.DirectAnswer):
        __slots__ = ()

        def __init__(self, body: bytes) -> None:
            made.append(body)
            super().__init__(body)

    def counted_ok_bytes(body: bytes) -> bytes:
        made.append(body)
        return answer.ok_bytes(body)

    monkeypatch.setattr(polling, "DirectAnswer", Counted)
    monkeypatch.setattr(parkedpoll, "ok_bytes", counted_ok_bytes)
    return made


async def _pass_through(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    return await handler(request)


def _with_middleware(app: web.Application) -> None:
    app.middlewares.append(web.middleware(_pass_through))


def _with_prepare_receiver(app: web.Application) -> None:
    async def receiver(_: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Prepared"] = "yes"

    app.on_response_prepare.append(receiver)


async def _port(
    aiohttp_server: Any, change: Callable[[web.Application], None] | None = None, **options: Any
) -> int:
    app, _ = make_app(**options)
    if change is not None:
        change(app)
    server = await aiohttp_server(app)
    return int(server.port)


MESSAGES = [b"hello", "h\u00e9llo \u2603".encode(), "\ufeffstarts with a BOM".encode()]


async def test_the_direct_answer_is_byte_for_byte_aiohttps(aiohttp_server, direct_made):
    direct = await _port(aiohttp_server)
    regular = await _port(aiohttp_server, _with_middleware)
    for message in MESSAGES:
        (fast,) = await _answers(direct, _post(message), 1)
        (slow,) = await _answers(regular, _post(message), 1)
        assert _undated(fast) == _undated(slow)
        assert fast.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n")
    # a BOM-led message gets a second BOM, which the browser strips (as before)
    assert direct_made == [MESSAGES[0], MESSAGES[1], "\ufeff".encode() + MESSAGES[2]]


async def test_pipelined_posts_are_answered_in_order(aiohttp_server, direct_made):
    port = await _port(aiohttp_server)
    bodies = [f"message {i}".encode() for i in range(5)]
    raw = await _answers(port, b"".join(_post(b) for b in bodies), len(bodies))
    assert [r.split(b"\r\n\r\n", 1)[1] for r in raw] == bodies
    assert direct_made == bodies


@pytest.mark.parametrize(
    ("case", "change", "options", "request_kwargs", "expect"),
    [
        ("a middleware", _with_middleware, {}, {}, b""),
        ("a prepare signal", _with_prepare_receiver, {}, {}, b"\r\nX-Prepared: yes"),
        (
            "a CORS allow-list",
            None,
            {"allowed_origins": ["https://app.example"]},
            {"extra": {"Origin": "https://app.example"}},
            b"\r\nAccess-Control-Allow-Origin: https://app.example",
        ),
        ("HTTP/1.0", None, {}, {"version": "1.0"}, b"HTTP/1.0 200 OK"),
        ("a closing client", None, {}, {"extra": {"Connection": "close"}}, b"Connection: close"),
    ],
)
async def test_where_something_could_tell_aiohttp_answers(
    aiohttp_server, direct_made, case, change, options, request_kwargs, expect
):
    port = await _port(aiohttp_server, change, **options)
    (raw,) = await _answers(port, _post(b"hello", **request_kwargs), 1)
    assert raw.endswith(b"\r\n\r\nhello"), case
    assert expect in raw, case
    assert direct_made == [], case


async def test_the_access_log_reads_the_direct_answer_as_aiohttps(aiohttp_server, caplog):
    logger = logging.getLogger("test.direct.access")
    fmt = '%s %b "%{Content-Type}o" %{Content-Length}o %{Server}o'
    lines = []
    for change in (None, _with_middleware):
        app, _ = make_app()
        if change is not None:
            change(app)
        server = await aiohttp_server(app, access_log=logger, access_log_format=fmt)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=logger.name):
            await _answers(int(server.port), _post(b"hello"), 1)
            await server.close()  # the log line is written once the answer is
        lines.append([r.getMessage() for r in caplog.records if r.name == logger.name])
    assert lines[0] == lines[1]
    assert re.fullmatch(r'200 1\d\d "text/plain; charset=utf-8" 5 Python/.*', lines[0][0])


class _Transport:
    def __init__(self, closing: bool = False) -> None:
        self.closing = closing
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _Writer:
    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.draining = asyncio.Event()

    async def drain(self) -> None:
        self.draining.set()
        await self.gate.wait()


class _Request:
    def __init__(self, transport: _Transport, writer: _Writer) -> None:
        self.transport = transport
        self.writer = writer


async def test_prepare_waits_for_a_slow_reader_and_writes_once():
    gate = asyncio.Event()
    transport = _Transport()
    reply = answer.DirectAnswer(b"hi")
    writer = _Writer(gate)
    preparing = asyncio.ensure_future(reply.prepare(_Request(transport, writer)))  # type: ignore[arg-type]
    await asyncio.wait_for(writer.draining.wait(), 5)
    assert len(transport.written) == 1 and transport.written[0].endswith(b"\r\n\r\nhi")
    assert not preparing.done()
    gate.set()
    await asyncio.wait_for(preparing, 5)
    assert await reply.prepare(_Request(transport, _Writer(gate))) is None  # type: ignore[arg-type]
    assert len(transport.written) == 1
    await reply.write_eof()
    assert reply.prepared and reply.body_length == len(transport.written[0]) and reply.keep_alive


async def test_a_client_gone_before_the_answer_is_a_connection_error():
    reply = answer.DirectAnswer(b"hi")
    transport = _Transport(closing=True)
    with pytest.raises(ConnectionResetError):
        await reply.prepare(_Request(transport, _Writer(asyncio.Event())))  # type: ignore[arg-type]
    assert transport.written == []


def _get(cookie: str | None = None) -> bytes:
    lines = ["GET /bullet HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in POLL_HEADERS.items()]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _polled(aiohttp_server: Any, change: Callable[[web.Application], None] | None) -> bytes:
    """A parked poll's answer, carrying a message pushed to its session."""
    app, endpoint = make_app()
    if change is not None:
        change(app)
    server = await aiohttp_server(app)
    (first,) = await _answers(int(server.port), _get(), 1)
    cookie = re.search(rb"\r\nSet-Cookie: ([^;\r]*)", first)
    assert cookie is not None, first
    session_id = cookie[1].decode().partition("=")[2]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_get(cookie[1].decode()))  # this poll makes the session and parks
        await wait_for(lambda: endpoint.registry.get(session_id) is not None)
        conn = endpoint.registry.get(session_id)
        assert conn is not None
        conn.send("pushed h\u00e9llo")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
        assert length is not None, head
        return head + await asyncio.wait_for(reader.readexactly(int(length[1])), 5)
    finally:
        writer.close()


async def test_a_polls_answer_is_byte_for_byte_aiohttps(aiohttp_server, direct_made):
    fast = await _polled(aiohttp_server, None)
    assert direct_made == ["pushed h\u00e9llo".encode()]
    slow = await _polled(aiohttp_server, _with_middleware)
    assert len(direct_made) == 1
    assert fast.endswith("\r\n\r\npushed h\u00e9llo".encode())
    assert _undated(fast) == _undated(slow)
