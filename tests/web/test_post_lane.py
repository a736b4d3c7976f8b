"""A keep-alive connection's POSTs answered off aiohttp (web/postlane.py), and nobody can tell.

After one POST answered directly, the connection's next plain POSTs are
answered by the lane with the bytes aiohttp would write. Every other request,
sent on a lane, gets the same answer (and leaves the connection open or
closed the same way) as on a fresh connection that aiohttp serves.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence

import pytest
from aiohttp import http_parser, web

from bullet_py import Connection, Handler
from bullet_py.core.ratelimit import RateLimiter
from bullet_py.logs import Recorder
from bullet_py.web.endpoint import BulletEndpoint
from bullet_py.web.postlane import (
    _HEAD_MEMO_LENGTH,
    _HEAD_MEMO_SIZE,
    _HEADS,
    _ONCE,
    _PENDING_MAX,
    read_post,
)
from tests.deploy.servers import make_certificate
from tests.helpers import RAW_TIMEOUT, RawHttpClient, make_app, wait_for, without_date

_TIMEOUT = RAW_TIMEOUT
_LINE = b"POST /bullet HTTP/1.1\r\n"
_HOSTED = _LINE + b"Host: a\r\n"


class _Quiet(Handler):
    """Echoes, except: ``quiet`` (no reply), ``boom`` (raises), ``wait`` (waits on ``gate``)."""

    gate: asyncio.Event | None = None

    async def on_message(self, conn: Connection, message: str) -> str | None:
        if message == "quiet":
            return None
        if message == "boom":
            raise RuntimeError("boom")
        if message == "wait":
            assert _Quiet.gate is not None
            await _Quiet.gate.wait()
        return message


class _Counting(Recorder):
    """Notes the messages counted in and out."""

    def __init__(self, counted: list[tuple[str, str]]) -> None:
        self.counted = counted

    def message_in(self, transport: str) -> None:
        self.counted.append(("in", transport))

    def message_out(self, transport: str, n: int = 1) -> None:
        self.counted.append(("out", transport))


class _Client(RawHttpClient):
    """One keep-alive connection speaking raw HTTP/1.1: polls and POSTs."""

    def post_bytes(self, body: bytes, *, extra: str = "", line: bytes = _LINE) -> bytes:
        cookie = f"Cookie: {self.cookie}\r\n" if self.cookie else ""
        head = (
            f"Host: 127.0.0.1\r\nX-Socket-Transport: xhrPolling\r\n{cookie}{extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return line + head.encode() + body

    def post(self, body: bytes, **kwargs: str) -> None:
        self.writer.write(self.post_bytes(body, **kwargs))

    async def start_session(self) -> None:
        await super().start_session()
        self.post(b"hello")  # a live session now, and the connection's first direct answer
        head, body = await self.answer()
        assert head.startswith(b"HTTP/1.1 200 ") and body == b"hello"

    async def closed(self) -> bool:
        """Whether the server closed the connection (nothing more comes, and EOF)."""
        try:
            return await asyncio.wait_for(self.reader.read(1), _TIMEOUT) == b""
        except ConnectionResetError:
            return True


async def _on_lane(server, endpoint: BulletEndpoint) -> _Client:  # type: ignore[no-untyped-def]
    """A client with a live session whose connection is on a lane."""
    before = len(endpoint.post_lanes)
    client = await _Client.open(server.port)
    try:
        await client.start_session()
        await wait_for(lambda: len(endpoint.post_lanes) == before + 1)
        assert server.handler is not None and not server.handler.connections  # not aiohttp's
    except BaseException:
        client.close()
        raise
    return client


@pytest.fixture
async def lane_server(aiohttp_server):  # type: ignore[no-untyped-def]
    _Quiet.gate = asyncio.Event()
    app, endpoint = make_app(handler=_Quiet, max_message_size=64)
    server = await aiohttp_server(app)
    return server, endpoint


async def test_the_lane_answers_with_aiohttps_bytes(lane_server):  # type: ignore[no-untyped-def]
    server, endpoint = lane_server
    client = await _on_lane(server, endpoint)
    (lane,) = endpoint.post_lanes
    counted: list[tuple[str, str]] = []
    endpoint.hub.recorder = _Counting(counted)
    try:
        for body in (b"hello", "é ünïcode \u2028".encode(), b"quiet", b"boom"):
            client.post(body)
            lane_head, lane_body = await client.answer()
            assert endpoint.post_lanes == {lane}  # answered there, still there
            on_lane, counted[:] = list(counted), []
            reference = await _Client.open(server.port, client.cookie)
            try:
                reference.post(body)  # a fresh connection's first POST: aiohttp's
                ref_head, ref_body = await reference.answer()
            finally:
                reference.close()
            assert without_date(lane_head) == without_date(ref_head)
            assert lane_body == ref_body
            assert on_lane == counted and on_lane  # the same metrics, too
            counted.clear()
    finally:
        client.close()


def _lane_cases() -> list[tuple[str, list[bytes]]]:
    """Requests a lane hands to aiohttp, as the chunks a client writes."""
    c = _Client(None, None)  # type: ignore[arg-type]
    c.cookie = "COOKIE"
    return [
        ("a poll", [b"GET /bullet HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: COOKIE\r\n\r\n"]),
        ("another path", [c.post_bytes(b"x", line=b"POST /other HTTP/1.1\r\n")]),
        ("a query", [c.post_bytes(b"x", line=b"POST /bullet?a=1 HTTP/1.1\r\n")]),
        ("HTTP/1.0", [c.post_bytes(b"x", line=b"POST /bullet HTTP/1.0\r\n")]),
        ("HEAD", [b"HEAD /bullet HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"]),
        ("a foreign host", [c.post_bytes(b"x").replace(b"Host: 127.0.0.1", b"Host: evil.test")]),
        ("a foreign origin", [c.post_bytes(b"x", extra="Origin: http://evil.test\r\n")]),
        ("own origin", [c.post_bytes(b"x", extra="Origin: http://127.0.0.1\r\n")]),
        ("no session", [c.post_bytes(b"x").replace(b"COOKIE", b"bullet_sid=unknownunknown")]),
        ("quoted cookie", [c.post_bytes(b"x").replace(b"COOKIE", b'bullet_sid="a b"')]),
        ("connection close", [c.post_bytes(b"x", extra="Connection: close\r\n")]),
        ("gzip", [c.post_bytes(b"x", extra="Content-Encoding: gzip\r\n")]),
        ("identity", [c.post_bytes(b"x", extra="Content-Encoding: Identity\r\n")]),
        ("too big", [c.post_bytes(b"x" * 300)]),
        ("too many characters", [c.post_bytes("é".encode() * 65)]),
        ("not UTF-8", [c.post_bytes(b"\xff\xfe")]),
        ("empty", [c.post_bytes(b"")]),
        (
            "chunked",
            [
                _LINE + b"Host: 127.0.0.1\r\nCookie: COOKIE\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\nhi\r\n0\r\n\r\n"
            ],
        ),
        ("expect", [c.post_bytes(b"x", extra="Expect: 100-continue\r\n")]),
        ("upgrade", [c.post_bytes(b"x", extra="Upgrade: websocket\r\n")]),
        ("folded", [c.post_bytes(b"x", extra="X-A: 1\r\n b\r\n")]),
        ("two lengths", [c.post_bytes(b"x", extra="Content-Length: 1\r\n")]),
        (
            "a signed length",
            [c.post_bytes(b"x").replace(b"Content-Length: 1", b"Content-Length: +1")],
        ),
        ("no length", [_LINE + b"Host: 127.0.0.1\r\nCookie: COOKIE\r\n\r\n"]),
        ("no host", [_LINE + b"Cookie: COOKIE\r\nContent-Length: 1\r\n\r\nx"]),
        ("non-ASCII header", [c.post_bytes(b"x", extra="X-A: \xe9\r\n")]),
        ("a bare LF", [c.post_bytes(b"x", extra="X-A: 1\nX-B: 2\r\n")]),
        ("forwarded", [c.post_bytes(b"x", extra="X-Forwarded-Host: evil.test\r\n")]),
        ("garbage", [b"\x16\x03\x01 not http\r\n\r\n"]),
        ("127 headers", [c.post_bytes(b"x", extra="X-A: 1\r\n" * 123)]),
        ("128 headers", [c.post_bytes(b"x", extra="X-A: 1\r\n" * 124)]),
        ("129 headers", [c.post_bytes(b"x", extra="X-A: 1\r\n" * 125)]),
        ("a long header", [c.post_bytes(b"x", extra="X-A: " + "a" * 8200 + "\r\n")]),
        ("split head", [c.post_bytes(b"hello")[:30], c.post_bytes(b"hello")[30:]]),
        ("split body", [c.post_bytes(b"hello")[:-2], c.post_bytes(b"hello")[-2:]]),
    ]


async def _exchange(
    client: _Client, chunks: Sequence[bytes], received: Callable[[], Awaitable[None]]
) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The answers (heads without Date, bodies) to ``chunks``; then whether the connection
    still serves a plain POST."""
    for i, chunk in enumerate(chunks):
        client.writer.write(chunk)
        if i < len(chunks) - 1:
            await received()  # the server has the first part: the rest comes later
    answers = []
    while True:
        head, body = await client.answer()
        answers.append((without_date(head), body))
        if not head.startswith(b"HTTP/1.1 1"):  # after 100 Continue, the answer
            break
    try:
        client.post(b"probe")
        return answers, (await client.answer())[1] == b"probe"
    except (asyncio.IncompleteReadError, ConnectionError):
        return answers, False


@pytest.mark.parametrize("name,chunks", _lane_cases(), ids=[case[0] for case in _lane_cases()])
async def test_every_request_on_a_lane_is_answered_as_aiohttp_answers_it(  # type: ignore[no-untyped-def]
    lane_server, name, chunks
):
    server, endpoint = lane_server
    client = await _on_lane(server, endpoint)
    reference = await _Client.open(server.port, client.cookie)
    cookie = client.cookie.encode()
    chunks = [chunk.replace(b"COOKIE", cookie) for chunk in chunks]

    async def handed_back() -> None:
        await wait_for(lambda: not endpoint.post_lanes)

    async def at_once() -> None:
        return None

    try:
        on_lane = await _exchange(client, chunks, handed_back)
        fresh = await _exchange(reference, chunks, at_once)  # aiohttp's first request
        assert on_lane == fresh
    finally:
        client.close()
        reference.close()


async def test_the_lane_answers_requests_sent_ahead_in_order(lane_server):  # type: ignore[no-untyped-def]
    server, endpoint = lane_server
    client = await _on_lane(server, endpoint)
    try:
        poll = b"GET /bullet HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + client.cookie.encode()
        client.writer.write(
            client.post_bytes(b"one") + client.post_bytes(b"two") + poll + b"\r\n\r\n"
        )
        assert (await client.answer())[1] == b"one"
        assert (await client.answer())[1] == b"two"
        head, _ = await client.answer()  # the poll: aiohttp's (nothing queued: 204 at its timeout)
        assert head.startswith(b"HTTP/1.1 204 ")
        # and the next POST takes a lane again
        client.post(b"three")
        assert (await client.answer())[1] == b"three"
        await wait_for(lambda: len(endpoint.post_lanes) == 1)
    finally:
        client.close()


async def test_a_handler_that_waits_keeps_the_order(lane_server):  # type: ignore[no-untyped-def]
    server, endpoint = lane_server
    client = await _on_lane(server, endpoint)
    try:
        client.writer.write(client.post_bytes(b"wait") + client.post_bytes(b"after"))
        await wait_for(lambda: next(iter(endpoint.post_lanes)).busy)
        assert _Quiet.gate is not None
        _Quiet.gate.set()
        assert (await client.answer())[1] == b"wait"
        assert (await client.answer())[1] == b"after"
    finally:
        client.close()


async def test_requests_sent_ahead_of_a_slow_answer_stop_the_reading(aiohttp_server):  # type: ignore[no-untyped-def]
    _Quiet.gate = asyncio.Event()
    app, endpoint = make_app(handler=_Quiet, post_rate_per_session=None)  # 2,000 at once
    server = await aiohttp_server(app)
    client = await _on_lane(server, endpoint)
    (lane,) = endpoint.post_lanes
    try:
        client.post(b"wait")
        await wait_for(lambda: lane.busy)
        ahead = [client.post_bytes(b"%05d" % i) for i in range(2000)]  # about 300 KB
        client.writer.write(b"".join(ahead))
        await wait_for(lambda: lane.reading_paused)
        assert len(lane.pending) <= _PENDING_MAX + 2**18  # what one read may bring past it
        assert _Quiet.gate is not None
        _Quiet.gate.set()
        assert (await client.answer())[1] == b"wait"
        for i in range(2000):
            assert (await client.answer())[1] == b"%05d" % i
        assert endpoint.post_lanes == {lane} and not lane.reading_paused
    finally:
        client.close()


async def test_the_lane_spends_the_post_rate(aiohttp_server):  # type: ignore[no-untyped-def]
    app, endpoint = make_app(handler=_Quiet, post_rate_per_address=None)
    endpoint.post_limits = (RateLimiter(0.01, 3), None)  # three POSTs, then none for a while
    server = await aiohttp_server(app)
    client = await _on_lane(server, endpoint)  # one token spent by aiohttp
    try:
        client.post(b"two")
        assert (await client.answer())[1] == b"two"  # by the lane, which spends one
        assert len(endpoint.post_lanes) == 1
        client.post(b"three")
        assert (await client.answer())[1] == b"three"
        client.post(b"four")  # no token left: refused (by aiohttp), and closed
        head, _ = await client.answer()
        assert head.startswith(b"HTTP/1.1 429 ")
        assert await client.closed()
    finally:
        client.close()


async def test_an_idle_lane_closes_at_aiohttps_keepalive_timeout(aiohttp_server):  # type: ignore[no-untyped-def]
    app, endpoint = make_app(handler=_Quiet)
    server = await aiohttp_server(app, keepalive_timeout=0.3)
    client = await _on_lane(server, endpoint)
    try:
        client.post(b"still here")  # the clock starts again after each answer
        assert (await client.answer())[1] == b"still here"
        assert await client.closed()
        await wait_for(lambda: not endpoint.post_lanes)
    finally:
        client.close()


async def test_stopping_closes_idle_lanes_and_busy_ones_after_their_answer(aiohttp_server):  # type: ignore[no-untyped-def]
    _Quiet.gate = asyncio.Event()
    app, endpoint = make_app(handler=_Quiet)
    server = await aiohttp_server(app)
    idle = await _on_lane(server, endpoint)
    busy = await _on_lane(server, endpoint)
    try:
        busy.post(b"wait")
        await wait_for(lambda: any(lane.busy for lane in endpoint.post_lanes))
        stopping = asyncio.create_task(server.close())
        assert await idle.closed()
        _Quiet.gate.set()
        assert (await busy.answer())[1] == b"wait"
        assert await busy.closed()
        await asyncio.wait_for(stopping, _TIMEOUT)
        assert not endpoint.post_lanes
    finally:
        idle.close()
        busy.close()


async def test_a_client_that_leaves_mid_answer_costs_nothing(lane_server, caplog):  # type: ignore[no-untyped-def]
    server, endpoint = lane_server
    client = await _on_lane(server, endpoint)
    client.post(b"wait")
    await wait_for(lambda: any(lane.busy for lane in endpoint.post_lanes))
    client.close()
    await wait_for(lambda: not endpoint.post_lanes)
    assert _Quiet.gate is not None
    with caplog.at_level(logging.ERROR, logger="bullet_py"):
        _Quiet.gate.set()
        other = await _on_lane(server, endpoint)  # and the server goes on
        other.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_no_lane_where_someone_could_tell(aiohttp_server):  # type: ignore[no-untyped-def]
    @web.middleware
    async def passthrough(request: web.Request, handler):  # type: ignore[no-untyped-def]
        return await handler(request)

    app, endpoint = make_app(handler=_Quiet)
    app.middlewares.append(passthrough)
    server = await aiohttp_server(app)
    client = await _Client.open(server.port)
    try:
        await client.start_session()
        client.post(b"again")
        assert (await client.answer())[1] == b"again"
        assert not endpoint.post_lanes and server.handler.connections
    finally:
        client.close()


async def test_a_lane_over_tls_sees_https(tmp_path):  # type: ignore[no-untyped-def]
    cert, key = make_certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    app, endpoint = make_app(handler=_Quiet)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    port = runner.addresses[0][1]
    client = _Client(*await asyncio.open_connection("127.0.0.1", port, ssl=client_tls))
    try:
        await client.start_session()
        await wait_for(lambda: len(endpoint.post_lanes) == 1)
        client.post(b"own", extra="Origin: https://127.0.0.1\r\n")  # the Host has no port
        assert (await client.answer())[1] == b"own"
        assert len(endpoint.post_lanes) == 1  # answered on the lane: its origin is https
        client.post(b"plain", extra="Origin: http://127.0.0.1\r\n")
        head, _ = await client.answer()
        assert head.startswith(b"HTTP/1.1 403 ")  # another origin, handed to aiohttp
        assert not endpoint.post_lanes
    finally:
        client.close()
        await runner.cleanup()


# --- read_post, without a socket --------------------------------------------


def test_read_post_reads_what_the_endpoint_reads() -> None:
    request = (
        _LINE + b"host: a.test\r\nCOOKIE: s=1\r\nOrigin:  http://a.test \r\nX-Other: 1\r\n"
        b"Sec-Fetch-Site: same-origin\r\nX-Bullet-Tab: abcdefgh\r\nContent-Length: 2\r\n\r\nhiGET"
    )
    found = read_post(request, _LINE)
    assert found is not None
    post, start, end = found
    assert request[start:end] == b"hi" and request[end:] == b"GET"
    assert (post.host, post.cookie, post.origin, post.site, post.tab) == (
        "a.test",
        "s=1",
        "http://a.test",
        "same-origin",
        "abcdefgh",
    )
    assert not post.forwarded


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /other HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        _LINE + b"Host: a\r\nContent-Length: 5\r\n\r\nhi",  # the body has not all come
        _LINE + b"Content-Length: 2\r\n\r\nhi",  # no Host: aiohttp refuses it
        _HOSTED + b"Content-Length: 2\r\n",  # nor the head
        _HOSTED + b"Content-Length: 0x2\r\n\r\nhi",
        _HOSTED + b"Content-Length : 2\r\n\r\nhi",
        _LINE + b"Host: a\r\nHost: b\r\nContent-Length: 2\r\n\r\nhi",
        _HOSTED + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nhi",
        _HOSTED + b"X: \x00\r\nContent-Length: 2\r\n\r\nhi",
        _HOSTED + b"X: a\rb\r\nContent-Length: 2\r\n\r\nhi",
        _HOSTED + b"X-Long: " + b"a" * 9000 + b"\r\nContent-Length: 2\r\n\r\nhi",
        _HOSTED + b"X: 1\r\n" * 127 + b"Content-Length: 2\r\n\r\nhi",
    ],
)
def test_read_post_leaves_anything_else_to_aiohttp(request_bytes: bytes) -> None:
    assert read_post(request_bytes, _LINE) is None


def test_headers_aiohttp_refuses_twice_are_aiohttps_when_repeated() -> None:
    singletons = {name.lower().encode() for name in http_parser.SINGLETON_HEADERS}
    assert singletons and singletons <= _ONCE
    for name in sorted(singletons - {b"content-length", b"host", b"transfer-encoding"}):
        once = _HOSTED + name + b": a\r\nContent-Length: 2\r\n\r\nhi"
        twice = _HOSTED + name + b": a\r\n" + name + b": b\r\nContent-Length: 2\r\n\r\nhi"
        assert read_post(once, _LINE) is not None
        assert read_post(twice, _LINE) is None


def test_read_post_takes_the_lower_limits() -> None:
    request = _HOSTED + b"X: 1\r\n" * 10 + b"Content-Length: 2\r\n\r\nhi"
    assert read_post(request, _LINE) is not None
    assert read_post(request, _LINE, headers_max=13) is not None  # 12 header lines
    assert read_post(request, _LINE, headers_max=12) is None
    head = len(request) - len(b"\r\n\r\nhi")  # request line and headers
    assert read_post(request, _LINE, head_max=head) is not None
    assert read_post(request, _LINE, head_max=head - 1) is None


def test_heads_read_are_remembered_within_a_bound() -> None:
    for i in range(_HEAD_MEMO_SIZE + 10):
        request = _HOSTED + b"X-Count: %d\r\nContent-Length: 2\r\n\r\nhi" % i
        assert read_post(request, _LINE) is not None
        assert len(_HEADS) <= _HEAD_MEMO_SIZE
    long_head = (
        _HOSTED + b"X-Long: " + b"a" * _HEAD_MEMO_LENGTH + b"\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert read_post(long_head, _LINE) is not None
    assert not any(len(head) > _HEAD_MEMO_LENGTH for head in _HEADS)
