"""I. Hostile clients sharing one server fairly (docs/robustness.md items 75-80).

Two client addresses are told apart the way a trusted-proxy middleware does it
(``request.clone(remote=...)``, as aiohttp-remotes does): every socket stays
on 127.0.0.1 and the header ``X-Test-Peer`` names the address the endpoint
sees. Outcomes only (status and close codes, counts, log lines); the CPU and
round-trip figures are bench/worst_case.py's and bench/robustness.py's.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

from bullet_py import Options, setup
from bullet_py.codec import DEFAULT_LIMITS
from bullet_py.codec.bert import decode, encode
from bullet_py.codec.terms import Atom
from bullet_py.exceptions import DecodeError
from tests.helpers import FAST, POLL_HEADERS, POST_HEADERS, Recorder, wait_for
from tests.robustness.apps import CHARACTER, SYNC, Running, is_error, stream_server
from tests.robustness.harness import LogCheck, probing
from tests.robustness.raw import (
    OP_PING,
    OP_TEXT,
    RawConnection,
    RawWebSocket,
    http_request,
    ws_frame,
)

A = Atom
PEER = "X-Test-Peer"


@web.middleware
async def as_peer(request: web.Request, handler: Any) -> web.StreamResponse:
    """The address a trusted proxy would report, from a test header."""
    peer = request.headers.get(PEER)
    if peer:
        request = request.clone(remote=peer)
    return await handler(request)  # type: ignore[no-any-return]


async def peer_server(aiohttp_server: Any, **options: Any) -> Running:
    """The echo server behind :func:`as_peer`. Options this version lacks are left
    out, so the same test can be run against an older tree to see it fail."""
    known = {f.name for f in dataclasses.fields(Options)}
    events: list[tuple[str, str, Any]] = []
    app = web.Application(middlewares=[as_peer])
    chosen = {k: v for k, v in {**FAST, **options}.items() if k in known}
    endpoint = setup(app, "/bullet", lambda: Recorder(events), options=Options(**chosen))
    return Running(await aiohttp_server(app), endpoint, events)


async def open_and_drop_stream(port: int, peer: str) -> int:
    """The attacker's move: an event stream opened, then dropped at once; its status."""
    conn = await RawConnection.open(port)
    try:
        await conn.send(http_request("GET", headers={"Accept": "text/event-stream", PEER: peer}))
        head = await conn.read_head()
        return head.status
    finally:
        conn.abort()


# --- 75: minting sessions ---------------------------------------------------------


async def test_75_one_address_minting_sessions_is_429_and_another_address_is_served(
    aiohttp_server, caplog
):
    logs = LogCheck(caplog)
    srv = await peer_server(
        aiohttp_server, session_mint_rate_per_address=5.0, session_mint_burst_per_address=10.0
    )
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        for i in range(60):  # cookieless polls, cookieless POSTs, dropped streams
            if i % 3 == 0:
                async with s.get(srv.url, headers={**POLL_HEADERS, PEER: "10.0.0.66"}) as r:
                    statuses[r.status] += 1
            elif i % 3 == 1:
                headers = {**POST_HEADERS, PEER: "10.0.0.66"}
                async with s.post(srv.url, data=b"noreply", headers=headers) as r:
                    statuses[r.status] += 1
            else:
                statuses[await open_and_drop_stream(srv.port, "10.0.0.66")] += 1
        assert statuses[429] >= 40, statuses  # 10 in the burst, a few more refilled
        # Another address: a WebSocket, a poll and a POST, all served.
        ws = await s.ws_connect(srv.url, headers={PEER: "10.0.0.7"})
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "hello"
        await ws.close()
        async with s.get(srv.url, headers={**POLL_HEADERS, PEER: "10.0.0.7"}) as r:
            assert r.status == 204
            assert "bullet_sid" in r.cookies
    assert logs.count("rate_limited") >= 1
    assert all("reason=mint_address" in line for line in logs.lines("rate_limited"))
    logs.assert_no_traceback()


async def test_75_a_stale_cookie_presented_again_and_again_is_429(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await peer_server(
        aiohttp_server,
        session_mint_rate_per_address=None,
        session_mint_rate_per_cookie=1.0,
        session_mint_burst_per_cookie=5.0,
    )
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        stale = {**POLL_HEADERS, "Cookie": "bullet_sid=stale-cookie-never-issued"}
        for _ in range(30):
            async with s.get(srv.url, headers=stale) as r:
                statuses[r.status] += 1
    assert statuses[429] >= 20, statuses
    assert statuses[204] <= 10
    assert srv.endpoint.registry.pending_count <= 10
    assert any("reason=mint_cookie" in line for line in logs.lines("rate_limited"))


# --- 76: a full table is shared fairly --------------------------------------------


async def test_76_a_full_table_evicts_the_heaviest_addresss_anonymous_sessions_only(
    aiohttp_server, caplog
):
    """One address fills the table with dropped event streams; another address still
    gets a WebSocket and its polling session, and the attacker's own established
    session is never the one evicted."""
    srv = await peer_server(aiohttp_server, max_sessions=30, session_mint_rate_per_address=None)
    registry = srv.endpoint.registry
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        established = await s.ws_connect(srv.url, headers={PEER: "10.0.0.66"})
        await established.send_str("I spoke")
        assert (await established.receive(timeout=5)).data == "I spoke"
        statuses: Counter[int] = Counter()
        for _ in range(40):
            statuses[await open_and_drop_stream(srv.port, "10.0.0.66")] += 1
        assert statuses[503] >= 10, statuses  # the table is full for the attacker
        await wait_for(lambda: sum(c.attached for c in registry) == 1)  # streams dropped
        assert len(registry) == 30
        # The victim, at another address: a WebSocket ...
        ws = await s.ws_connect(srv.url, headers={PEER: "10.0.0.7"})
        await ws.send_str("victim")
        assert (await ws.receive(timeout=5)).data == "victim"
        # ... and a polling session: first GET gives a cookie, the POST claims it.
        async with s.get(srv.url, headers={**POLL_HEADERS, PEER: "10.0.0.7"}) as r:
            assert r.status == 204
            sid = r.cookies["bullet_sid"].value
        headers = {**POST_HEADERS, PEER: "10.0.0.7", "Cookie": f"bullet_sid={sid}"}
        async with s.post(srv.url, data=b"mine", headers=headers) as r:
            assert r.status == 200
            assert await r.text() == "mine"
        # The attacker is still refused: he holds more than his share.
        assert await open_and_drop_stream(srv.port, "10.0.0.66") == 503
        # His established session was not evicted.
        await established.send_str("still here")
        assert (await established.receive(timeout=5)).data == "still here"
        assert len(registry) <= 30
        await ws.close()
        await established.close()


# --- 77: message and control-frame budgets ---------------------------------------------


async def test_77_websocket_message_flood_is_closed_1008_and_the_probe_goes_on(
    aiohttp_server, caplog
):
    logs = LogCheck(caplog)
    srv = await peer_server(aiohttp_server, ws_message_rate=50.0, ws_message_burst=100.0)
    async with probing(srv.url) as probe:
        flooder = await RawWebSocket.connect(srv.port)
        await flooder.conn.send(b"".join(ws_frame(OP_TEXT, b"x") for _ in range(5_000)))
        assert await flooder.close_code() == 1008
        await flooder.close()
        await probe.check(5)
    assert any("reason=ws_messages" in line for line in logs.lines("rate_limited"))
    logs.assert_no_traceback()


async def test_77_ping_flood_is_closed_1008(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await peer_server(aiohttp_server)  # the default control budget: 20/s, burst 40
    async with probing(srv.url) as probe:
        flooder = await RawWebSocket.connect(srv.port)
        await flooder.conn.send(b"".join(ws_frame(OP_PING, b"p") for _ in range(2_000)))
        assert await flooder.close_code() == 1008
        await flooder.close()
        await probe.check(5)
    assert any("reason=ws_control" in line for line in logs.lines("rate_limited"))


# --- 78: fairness in the read loop ---------------------------------------------------


async def test_78_a_connection_with_frames_always_ready_does_not_starve_the_others(
    aiohttp_server,
):
    """With no budget at all, a client's 20,000 pipelined 1-byte messages are all
    ready at once; the victim's 50 echoes still complete before the flooder's last
    reply, because the reader yields to the loop every few frames."""
    total = 20_000
    srv = await peer_server(aiohttp_server, ws_message_rate=None, ws_control_rate=None)
    flooder = await RawWebSocket.connect(srv.port)
    replies = 0

    async def read_replies() -> None:
        nonlocal replies
        while replies < total:
            await flooder.recv_text(timeout=60)
            replies += 1

    async with aiohttp.ClientSession() as s:
        victim = await s.ws_connect(srv.url, heartbeat=None)
        reader = asyncio.ensure_future(read_replies())
        await flooder.conn.send(b"".join(ws_frame(OP_TEXT, b"x") for _ in range(total)))
        for i in range(50):
            await victim.send_str(f"v{i}")
            assert (await victim.receive(timeout=30)).data == f"v{i}"
        replies_when_victim_done = replies
        await asyncio.wait_for(reader, 60)
        await victim.close()
    await flooder.close()
    assert replies_when_victim_done < total, "the victim waited for the whole flood"


# --- 79: unmasked client frames ---------------------------------------------------------


async def test_79_an_unmasked_client_frame_closes_the_connection_with_1002(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await peer_server(aiohttp_server)
    ws = await RawWebSocket.connect(srv.port)
    await ws.send_text("masked")
    assert await ws.recv_text() == "masked"  # the guard passes masked frames on
    await ws.send_frame(OP_TEXT, b"unmasked", mask=False)
    assert await ws.close_code() == 1002
    await ws.close()
    await wait_for(lambda: len(srv.endpoint.registry) == 0)
    assert srv.closes() == 1
    assert any("reason=unmasked" in line for line in logs.lines("bad_frame"))
    # Pipelined frames split anywhere still pass: one masked frame in 3-byte pieces.
    ws = await RawWebSocket.connect(srv.port)
    frame = ws_frame(OP_TEXT, b"y" * 300)
    for i in range(0, len(frame), 3):
        await ws.conn.send(frame[i : i + 3])
    assert await ws.recv_text() == "y" * 300
    await ws.close()


async def test_79_aiohttp_alone_still_accepts_unmasked_frames(aiohttp_server):
    """Why the guard exists: a plain aiohttp WebSocket echoes an unmasked frame. The
    day this fails, aiohttp refuses them itself and the guard in
    bullet_py.web.websocket can go."""

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/bullet", echo)
    server = await aiohttp_server(app)
    ws = await RawWebSocket.connect(server.port)
    await ws.send_frame(OP_TEXT, b"unmasked", mask=False)
    assert await ws.recv_text() == "unmasked"
    await ws.close()


# --- 80: bounded CPU per message ----------------------------------------------------------


async def test_80_a_big_ref_is_refused_before_it_is_encoded(aiohttp_server, caplog):
    """The issue's shape (a Ref of 99,000 one-character binaries) is over the decoder's
    element limit now; a Ref under it but over the Ref bound is ref_too_big, and the
    model is never called."""
    srv = await stream_server(aiohttp_server)
    big_ref = encode((SYNC, (A("read"), CHARACTER, [], [b"x"] * 99_000)))
    mid_ref = encode((SYNC, (A("read"), CHARACTER, [], [b"x"] * 1_000)))
    small = encode((SYNC, (A("read"), CHARACTER, [], 7)))
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(srv.url)
        await ws.send_str(big_ref)
        assert is_error((await ws.receive(timeout=5)).data, "undecodable", "too_many_elements")
        await ws.send_str(mid_ref)
        assert is_error((await ws.receive(timeout=5)).data, "bad_request", "ref_too_big")
        assert srv.calls == []
        await ws.send_str(small)
        reply = decode((await ws.receive(timeout=5)).data)
        assert reply[-1] == 7 and srv.calls == ["read"]
        await ws.close()


def test_80_decoder_limits_refuse_every_worst_case_shape_above_the_bound():
    """The shapes bench/worst_case.py searches, one element over max_elements."""
    over = DEFAULT_LIMITS.max_elements + 1
    shapes = {
        "small binaries": [b"x"] * over,
        "atoms": [A("a")] * over,
        "small integers": [1] * over,
        "empty lists": [[]] * over,
        "floats": [0.5] * over,
        "pairs": [(A("k"), 1)] * (over // 2),
    }
    for name, payload in shapes.items():
        text = encode((A("echo"), payload))
        try:
            decode(text)
        except DecodeError as exc:
            assert exc.reason == "too_many_elements", name
        else:
            raise AssertionError(f"{name}: {over} elements decoded")
    assert DEFAULT_LIMITS.max_elements <= 10_000
