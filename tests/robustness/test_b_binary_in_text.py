"""B. Binary strings inside UTF-8 text (docs/robustness.md items 19-28), on the wire.

Codec-level coverage: tests/codec/test_bert_limits.py (19-22, 28). Transport
coverage: tests/web/test_websocket.py (25, 28), test_polling.py (24, 28),
test_eventsource.py (26 CR refusal, 27 injection). Added here: every case on
each inbound path, raw malformed frames, and the byte-exact round trip.
"""

from __future__ import annotations

import aiohttp
import pytest

from bullet_py.codec.bert import decode
from tests.helpers import POLL_HEADERS, POST_HEADERS, SSE_HEADERS, EventStreamReader, wait_for
from tests.robustness.apps import A, echo_server, is_error, stream_server
from tests.robustness.harness import LogCheck
from tests.robustness.raw import OP_BINARY, OP_TEXT, RawConnection, RawWebSocket, http_request

ECHO = "\x83h\x02d\x00\x04echo"  # {echo, _} as BERT-JS writes it


async def both_paths(url: str, text: str) -> list[str]:
    """Send ``text`` as a WebSocket frame and as a POST body; both replies."""
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url) as ws:
            await ws.send_str(text)
            by_ws = await ws.receive_str(timeout=10)
        async with s.post(url, data=text.encode("utf-8"), headers=POST_HEADERS) as r:
            assert r.status == 200
            by_post = await r.text()
    return [by_ws, by_post]


@pytest.mark.parametrize(
    ("item", "payload", "value"),
    [
        (19, "k\x00\x08Łukasz €", "Łukasz €"),
        (19, "d\x00\x08Łukasz €", A("Łukasz €")),
        (19, "m\x00\x00\x00\x08Łukasz €", "Łukasz €"),
        (21, "k\x00\x02😀", "😀"),
        (21, "k\x00\x03😀a", "😀a"),
        (22, "k\x00\x01\ufffd", "\ufffd"),
    ],
)
async def test_19_21_22_text_beyond_latin1_reads_as_typed_on_each_path(
    aiohttp_server, item, payload, value
):
    srv = await stream_server(aiohttp_server)
    for reply in await both_paths(srv.url, ECHO + payload):
        assert decode(reply) == (A("echo"), value), item
    assert srv.calls == ["echo", "echo"]


@pytest.mark.parametrize(
    "text",
    [
        "\x83\u0100\x00",  # a tag above 255
        "\x83k\u20ac\x01a",  # inside a length field
        "\u0183a\x01",  # as the version
    ],
)
async def test_20_code_points_above_255_in_structure_are_bad_term(aiohttp_server, caplog, text):
    logs = LogCheck(caplog)
    srv = await stream_server(aiohttp_server)
    for reply in await both_paths(srv.url, text):
        assert is_error(reply, "undecodable", "bad_term")
    assert srv.calls == []
    logs.assert_no_traceback()


@pytest.mark.parametrize(
    "bad", [b"\xff", b"\xc0\x80", b"\xed\xa0\x80"], ids=["ff", "overlong", "surrogate"]
)
@pytest.mark.parametrize("layer", ["bullet", "stream"])
async def test_23_invalid_utf8_in_a_text_frame_closes_1007_once(aiohttp_server, caplog, bad, layer):
    logs = LogCheck(caplog)
    srv = await (echo_server if layer == "bullet" else stream_server)(aiohttp_server)
    ws = await RawWebSocket.connect(srv.port)
    await ws.send_frame(OP_TEXT, b"ok" + bad)
    assert await ws.close_code() == 1007
    await ws.close()
    await wait_for(lambda: srv.closes() == 1)  # cleanup ran, the close callback once
    assert srv.opens() == 1 and len(srv.endpoint.registry) == 0
    logs.assert_no_traceback()


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe", b"\xc0\x80", b"\x83\x68\x02\x64\x00\x04sync\x61\xe9"],
    ids=["ff-fe", "overlong", "raw-binary-bert"],
)
async def test_24_post_body_that_is_not_utf8_is_400_never_500(aiohttp_server, caplog, body):
    logs = LogCheck(caplog)
    srv = await stream_server(aiohttp_server)
    conn = await RawConnection.open(srv.port)
    head, _ = await conn.request(http_request("POST", headers=POST_HEADERS, body=body))
    await conn.close()
    assert head.status == 400
    assert srv.calls == [] and srv.opens() == 0
    assert logs.count("bad_body") == 1
    logs.assert_no_traceback()


async def test_25_binary_frames_are_ignored_and_the_socket_stays_up(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server)
    ws = await RawWebSocket.connect(srv.port)
    for payload in (b"\x83\x61\x01", b"", b"\xff" * 70_000):
        await ws.send_frame(OP_BINARY, payload)
    await ws.send_text("after")
    assert await ws.recv_text() == "after"  # no reply to the binary frames
    await ws.close()
    assert [e[2] for e in srv.events if e[0] == "message"] == ["after"]
    assert logs.count("binary_frame_ignored") == 0  # DEBUG at most, never a WARNING


ALL_BYTES = "".join(map(chr, range(256)))
PAYLOADS = [ALL_BYTES, "\r", "\n", "\r\n", "\x00", "\x85", "a\r", "\x83a\r"]


async def test_26_every_code_point_0_255_round_trips_byte_exact(aiohttp_server):
    """WebSocket, POST reply and long poll give back exactly what was sent; an event
    stream never carries CR: the session moves to polling and gets it unaltered."""
    srv = await echo_server(aiohttp_server, poll_timeout=2, session_idle_timeout=30)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.ws_connect(srv.url) as ws:
            for p in PAYLOADS:
                await ws.send_str(p)
                assert await ws.receive_str(timeout=10) == p
        for p in PAYLOADS:
            async with s.post(srv.url, data=p.encode("utf-8"), headers=POST_HEADERS) as r:
                assert await r.text() == p
        async with s.get(srv.url, headers=POLL_HEADERS) as r:  # the polling session
            sid = r.cookies["bullet_sid"].value
        async with s.post(srv.url, data=b"noreply", headers=POST_HEADERS):
            pass
        conn = srv.endpoint.registry.get(sid)
        for p in PAYLOADS:
            assert conn.send(p)
            async with s.get(srv.url, headers=POLL_HEADERS) as r:
                assert await r.text() == p
        # Event stream: CR-free payloads arrive as they are; one with CR is not sent there.
        async with s.get(srv.url, headers=SSE_HEADERS) as stream:
            # The stream resumes the polling session its cookie names (no new cookie).
            ssid = stream.cookies["bullet_sid"].value if "bullet_sid" in stream.cookies else sid
            await wait_for(lambda: srv.endpoint.registry.get(ssid) is not None)
            sconn = srv.endpoint.registry.get(ssid)
            reader = EventStreamReader(stream)
            sconn.send("\x00\x85\n" + ALL_BYTES.replace("\r", ""))
            assert await reader.next_event() == "\x00\x85\n" + ALL_BYTES.replace("\r", "")
            sconn.send(ALL_BYTES)
            assert await reader.next_event() is None  # the stream ends instead
        async with s.get(srv.url, headers=SSE_HEADERS) as again:
            assert again.status == 406  # the client falls back to polling
        async with s.get(srv.url, headers={**POLL_HEADERS, "Cookie": f"bullet_sid={ssid}"}) as r:
            assert await r.text() == ALL_BYTES


@pytest.mark.parametrize("evil", ["x\n\nevent: evil\ndata: y", "x\nid: 99\nretry: 1", "x\rid: 99"])
async def test_27_event_stream_field_injection_gives_one_event_and_no_fields(aiohttp_server, evil):
    srv = await echo_server(aiohttp_server, poll_timeout=2)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(srv.url, headers=SSE_HEADERS) as stream:
            sid = stream.cookies["bullet_sid"].value
            await wait_for(lambda: srv.endpoint.registry.get(sid) is not None)
            conn = srv.endpoint.registry.get(sid)
            reader = EventStreamReader(stream)  # fails on any field but data
            conn.send(evil)
            conn.send("next")
            if "\r" in evil:
                assert await reader.next_event() is None  # never sent on a stream
                async with s.get(srv.url, headers=POLL_HEADERS) as r:
                    assert await r.text() == evil
            else:
                assert await reader.next_event() == evil
                assert await reader.next_event() == "next"
