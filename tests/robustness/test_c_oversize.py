"""C. Oversize frames and bodies (docs/robustness.md items 29-35).

Items 29-33 here; 34 (parser limits) runs under both HTTP parsers in
``test_g_methods_headers.py``; 35 at the Stream layer is below and in
``tests/test_router.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib

import aiohttp
import pytest

from bullet_py.codec.bert import encode
from tests.helpers import POST_HEADERS, wait_for
from tests.robustness.apps import A, echo_server, is_error, read_msg, stream_server
from tests.robustness.harness import Baseline, LogCheck, probing, traced_growth
from tests.robustness.raw import (
    OP_CONT,
    OP_TEXT,
    RawConnection,
    RawWebSocket,
    http_request,
    ws_frame,
)

LIMIT = 4096  # max_message_size (UTF-16 units) for these tests
BYTE_CAP = 3 * LIMIT + 4  # what aiohttp is told: the most UTF-8 bytes LIMIT units can take
MB = 1 << 20


def deflate_bomb(total: int, wbits: int) -> bytes:
    """``total`` zero bytes compressed (gzip: wbits 31, zlib: 15, raw deflate: -15)."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = b"\0" * MB
    parts = [c.compress(chunk) for _ in range(total // MB)]
    parts.append(c.flush())
    return b"".join(parts)


async def test_29_websocket_frame_over_the_limit_closes_1009(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, max_message_size=LIMIT)
    async with probing(srv.url) as probe:
        base = Baseline(srv.endpoint)
        with traced_growth(2 * MB):
            # Over the unit limit but under aiohttp's byte cap: bullet_py counts units.
            ws = await RawWebSocket.connect(srv.port)
            await ws.send_text("é" * (LIMIT + 1))
            assert await ws.close_code() == 1009
            await ws.close()
            # A frame declaring 64 MiB: refused on its header, nothing buffered.
            ws = await RawWebSocket.connect(srv.port)
            await ws.conn.send(ws_frame(OP_TEXT, b"x" * 1024, declared=64 * MB)[: 2 + 8 + 4 + 16])
            assert await ws.close_code() == 1009
            await ws.close()
            await probe.check()
        await wait_for(lambda: srv.closes() == 2)
        await base.back()
    assert logs.count("too_big") == 1
    assert logs.count("bad_frame") == 1
    logs.assert_no_traceback()


async def test_30_fragments_past_the_limit_close_1009_before_the_end(aiohttp_server, caplog):
    """10,000 continuation frames of 1 KB: cut once the total passes the limit."""
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, max_message_size=LIMIT)
    async with probing(srv.url):
        base = Baseline(srv.endpoint)
        with traced_growth(2 * MB):
            ws = await RawWebSocket.connect(srv.port)
            await ws.send_frame(OP_TEXT, b"a" * 1024, fin=False)
            sent = 1
            while sent * 1024 <= BYTE_CAP and sent < 10_000:
                await ws.send_frame(OP_CONT, b"a" * 1024, fin=False)
                sent += 1
            assert await ws.close_code() == 1009
            assert sent < 10_000  # refused long before the 10,000 frames were in
            await ws.close()
        await wait_for(lambda: srv.closes() == 1)
        await base.back()
    assert logs.count("bad_frame") == 1
    logs.assert_no_traceback()


async def test_30_header_declaring_2_63_bytes_closes_1009_at_once(aiohttp_server):
    srv = await echo_server(aiohttp_server, max_message_size=LIMIT)
    ws = await RawWebSocket.connect(srv.port)
    frame = ws_frame(OP_TEXT, b"", declared=2**63 - 1)
    await ws.conn.send(frame + b"x")  # then the dribble would follow, 1 byte at a time
    assert await ws.close_code() == 1009
    await ws.close()
    await wait_for(lambda: srv.closes() == 1)


async def test_30_dribbled_frame_is_cut_by_the_idle_timeout(aiohttp_server):
    """A frame under the limit sent 1 byte at a time never completes: the idle timer ends it.

    ``ws_idle_timeout`` must exceed 20 s in Options; here the validated object is
    shortened so the test does not wait that long (the code path is the same).
    """
    srv = await echo_server(aiohttp_server, max_message_size=LIMIT, ws_idle_timeout=21.0)
    object.__setattr__(srv.endpoint.options, "ws_idle_timeout", 0.3)
    base = Baseline(srv.endpoint)
    ws = await RawWebSocket.connect(srv.port)
    await ws.conn.send(ws_frame(OP_TEXT, b"", declared=1000)[:6])  # header + mask, no payload
    dribbled = 0
    closed = asyncio.ensure_future(ws.close_code(timeout=30))
    while not closed.done() and dribbled < 1000:
        with contextlib.suppress(ConnectionError):
            await ws.conn.send(b"y")
        dribbled += 1
        await asyncio.wait([closed], timeout=0.05)  # the dribble's own pace
    assert closed.done() and dribbled < 1000  # ended before the frame could complete
    await ws.close()  # the client leaves during the closing handshake: on_close still runs
    await wait_for(lambda: srv.closes() == 1)
    await base.back()


async def test_31_permessage_deflate_is_declined_and_a_compressed_frame_refused(
    aiohttp_server, caplog
):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, max_message_size=LIMIT)
    bomb = deflate_bomb(200 * MB, -15)  # 200 MB of zeros as a raw deflate stream, ~200 KB
    async with probing(srv.url):
        with traced_growth(10 * MB):
            extra = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
            ws = await RawWebSocket.connect(srv.port, extra=extra)
            assert ws.head.get("sec-websocket-extensions") is None  # compression refused
            await ws.conn.send(ws_frame(OP_TEXT, bomb[:20_000], rsv1=True))
            assert await ws.close_code() in (1002, 1009)
            await ws.close()
    await wait_for(lambda: srv.closes() == 1)
    assert logs.count("bad_frame") == 1
    logs.assert_no_traceback()


async def test_32_declared_1_gib_post_is_413_at_once(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, max_message_size=LIMIT)
    async with probing(srv.url):
        base = Baseline(srv.endpoint)
        conn = await RawConnection.open(srv.port)
        await conn.send(
            http_request("POST", headers={**POST_HEADERS, "Content-Length": "1073741824"})
        )
        head = await conn.read_head()  # answered with no body byte sent
        assert head.status == 413
        assert await conn.closed_by_peer()
        await conn.close()
        await base.back()
    assert srv.opens() == 0  # the handler never ran
    assert logs.count("too_big") == 1
    logs.assert_no_traceback()


async def test_32_chunked_post_past_the_limit_is_413_before_its_end(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, max_message_size=LIMIT)
    conn = await RawConnection.open(srv.port)
    headers = {**POST_HEADERS, "Transfer-Encoding": "chunked"}
    await conn.send(http_request("POST", headers=headers, content_length=False))
    answer = asyncio.ensure_future(conn.read_head(timeout=30))
    chunk = b"1000\r\n" + b"a" * 0x1000 + b"\r\n"
    sent = 0
    with contextlib.suppress(ConnectionError):
        while not answer.done() and sent < 100 * BYTE_CAP:  # an endless body, bounded here
            await conn.send(chunk)
            sent += 0x1000
            await asyncio.sleep(0)
    head = await answer
    assert head.status == 413
    assert sent < 100 * BYTE_CAP  # answered while the body was still coming
    await conn.close()
    assert srv.opens() == 0
    assert logs.count("too_big") == 1


@pytest.mark.parametrize(("encoding", "wbits"), [("gzip", 31), ("deflate", 15), ("br", None)])
async def test_33_compressed_post_bomb_is_refused_without_inflating(
    aiohttp_server, caplog, long, encoding, wbits
):
    """1 MB -> 1 GB in the long run (64 MiB here): 415 at once, nothing inflated.

    ``br`` is refused by aiohttp's parser (400) when Brotli is not installed,
    else by bullet_py (415): either way before any handler and any inflation.
    """
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, max_message_size=LIMIT)
    size = (1024 if long else 64) * MB
    body = deflate_bomb(size, wbits) if wbits else b"\x1b\xff\xff" + b"\0" * 1024
    async with probing(srv.url):
        base = Baseline(srv.endpoint)
        with traced_growth(10 * MB):
            conn = await RawConnection.open(srv.port)
            headers = {**POST_HEADERS, "Content-Encoding": encoding}
            head, _ = await conn.request(http_request("POST", headers=headers, body=body))
            assert head.status in ((400, 415) if encoding == "br" else (415,))
            assert await conn.closed_by_peer()  # the rest is never read, nor inflated
            await conn.close()
        await base.back()
    assert srv.opens() == 0
    assert logs.count("bad_body") + logs.count("bad_http") == 1
    logs.assert_no_traceback()


@pytest.mark.parametrize("path", ["websocket", "post"])
async def test_35_fifty_megabyte_reply_is_bad_reply_and_logged(aiohttp_server, caplog, path):
    """A handler's 50 MB reply is capped: {error, bad_reply, Id} and an ERROR naming it.

    Unencodable values (set, object, NaN, 2^70, non-atom keys) are covered in
    tests/test_router.py::test_unencodable_reply_is_bad_reply_and_logged_with_the_handler.
    """
    srv = await stream_server(aiohttp_server)
    big = encode((A("big"), 1))
    async with aiohttp.ClientSession() as s:
        if path == "websocket":
            async with s.ws_connect(srv.url) as ws:
                await ws.send_str(big)
                assert is_error(await ws.receive_str(timeout=30), "bad_reply")
                await ws.send_str(read_msg())
                assert not is_error(await ws.receive_str(timeout=10), "bad_reply")
        else:
            resp = await s.post(srv.url, data=big.encode(), headers=POST_HEADERS)
            assert resp.status == 200
            assert is_error(await resp.text(), "bad_reply")
    assert "action big" in caplog.text
    assert srv.calls.count("big") == 1
