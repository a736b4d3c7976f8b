"""Resumable sessions in one process (docs/sessions.md), driven by raw clients on 127.0.0.1.

A drop leaves the session detached; the next connection with its cookie, on
any transport, gets what was queued first, in order, once, with no second
on_open. A silent holder is found dead at once and replaced; a live one
keeps its session. A counting client gets what was in flight; a gap is a
reset, never a silent hole.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.helpers import (
    POLL_HEADERS,
    SSE_HEADERS,
    EventStreamReader,
    cache_buster,
    closes,
    make_app,
    wait_for,
)

PROTOCOLS = ("bullet.resumed", "bullet.fresh")


def opens(events, session_id=None) -> int:
    return sum(1 for e in events if e[0] == "open" and (session_id is None or e[1] == session_id))


def drop(ws_or_response) -> None:
    """Vanish without a close frame (a reset)."""
    connection = getattr(ws_or_response, "_response", ws_or_response).connection
    connection.transport.abort()


async def detached(endpoint, sid: str) -> None:
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    await wait_for(lambda: not endpoint.registry.get(sid).attached)


async def test_a_dropped_websocket_resumes_by_its_cookie_with_what_was_queued(aiohttp_client):
    events = []
    app, endpoint = make_app(events, session_idle_timeout=30)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/bullet")
    sid = client.session.cookie_jar.filter_cookies(client.make_url("/bullet"))["bullet_sid"].value
    await ws.send_str("hello")
    assert (await ws.receive(timeout=5)).data == "hello"
    drop(ws)
    await detached(endpoint, sid)
    assert closes(events) == 0  # the session waits for its client
    for n in range(3):
        assert await endpoint.hub.send(sid, f"while away {n}")
    again = await client.ws_connect("/bullet")
    got = [(await again.receive(timeout=5)).data for _ in range(3)]
    assert got == ["while away 0", "while away 1", "while away 2"]
    await again.send_str("back")
    assert (await again.receive(timeout=5)).data == "back"
    assert opens(events) == 1 and endpoint.registry.get(sid) is not None
    await again.close()  # a close frame ends the session
    await wait_for(lambda: closes(events, sid) == 1)


async def test_the_websocket_handshake_sets_the_session_cookie(aiohttp_client):
    app, _endpoint = make_app()
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        cookie = ws._response.cookies["bullet_sid"]
        assert len(cookie.value) >= 22  # ≥ 128 random bits
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/bullet"


async def test_a_dropped_event_stream_resumes_and_the_drop_is_noticed_without_a_write(
    aiohttp_client,
):
    events = []
    # Keepalive far away: only the endpoint's check of its streams can notice the drop.
    app, endpoint = make_app(events, session_idle_timeout=30, stream_keepalive=60)
    client = await aiohttp_client(app)
    stream = await client.get("/bullet", headers=SSE_HEADERS)
    sid = stream.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    drop(stream)
    await detached(endpoint, sid)
    assert await endpoint.hub.send(sid, "queued")
    again = await client.get("/bullet", headers=SSE_HEADERS)
    assert "bullet_sid" not in again.cookies  # the same session
    assert await EventStreamReader(again).next_event() == "queued"
    assert opens(events) == 1
    again.close()


async def test_a_silent_websocket_is_replaced_at_once_and_its_session_resumed(aiohttp_client):
    events = []
    app, endpoint = make_app(events, session_idle_timeout=30, resume_probe_timeout=0.3)
    client = await aiohttp_client(app)
    # Kept open, never read, never answering a ping: a phone that changed network.
    silent = await client.ws_connect("/bullet?bullet_seen=0", autoping=False)
    sid = silent._response.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    # Written into the dead connection: a counting client gets it again.
    assert await endpoint.hub.send(sid, "in flight")
    again = await client.ws_connect("/bullet?bullet_seen=0", protocols=PROTOCOLS)
    assert again.protocol == "bullet.resumed"
    assert (await again.receive(timeout=5)).data == "in flight"
    assert await endpoint.hub.send(sid, "after")
    assert (await again.receive(timeout=5)).data == "after"
    assert opens(events) == 1
    await again.close()
    await silent.close()


async def test_a_live_websocket_keeps_its_session_and_the_second_tab_gets_its_own(aiohttp_client):
    events = []
    app, endpoint = make_app(events, session_idle_timeout=30, resume_probe_timeout=1.0)
    client = await aiohttp_client(app)
    first = await client.ws_connect("/bullet")
    reading = asyncio.ensure_future(first.receive())  # its reader answers pings
    sid = first._response.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    second = await client.ws_connect("/bullet", protocols=PROTOCOLS)
    assert second.protocol == "bullet.fresh"
    assert second._response.cookies["bullet_sid"].value != sid
    assert opens(events) == 2
    assert await endpoint.hub.send(sid, "still yours")
    assert (await asyncio.wait_for(reading, 5)).data == "still yours"
    await second.close()
    await first.close()


async def test_a_counting_client_gets_what_was_in_flight_once(aiohttp_client):
    events = []
    app, endpoint = make_app(events, session_idle_timeout=30)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/bullet?bullet_seen=0", protocols=PROTOCOLS)
    assert ws.protocol == "bullet.fresh"
    sid = ws._response.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    for n in range(1, 6):
        assert await endpoint.hub.send(sid, f"m{n}")
    got = [(await ws.receive(timeout=5)).data for _ in range(5)]
    assert got == ["m1", "m2", "m3", "m4", "m5"]  # written; the page only took three
    drop(ws)
    await detached(endpoint, sid)
    again = await client.ws_connect("/bullet?bullet_seen=3", protocols=PROTOCOLS)
    assert again.protocol == "bullet.resumed"
    assert [(await again.receive(timeout=5)).data for _ in range(2)] == ["m4", "m5"]
    assert await endpoint.hub.send(sid, "m6")
    assert (await again.receive(timeout=5)).data == "m6"
    await again.close()


async def test_a_gap_the_buffer_cannot_fill_is_a_reset_to_a_fresh_session(aiohttp_client):
    events = []
    app, endpoint = make_app(events, session_idle_timeout=30, replay_max_messages=2)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/bullet?bullet_seen=0", protocols=PROTOCOLS)
    sid = ws._response.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    for n in range(5):
        assert await endpoint.hub.send(sid, f"m{n}")
    for _ in range(5):
        await ws.receive(timeout=5)
    drop(ws)
    await detached(endpoint, sid)
    again = await client.ws_connect("/bullet?bullet_seen=1", protocols=PROTOCOLS)
    assert again.protocol == "bullet.fresh"  # the client is told: its page gets onreset
    assert again._response.cookies["bullet_sid"].value != sid
    await wait_for(lambda: closes(events, sid) == 1)  # the old session ended
    await again.close()


async def test_a_counting_poller_gets_a_lost_answer_again(aiohttp_client):
    app, endpoint = make_app(session_idle_timeout=30, poll_timeout=5)
    client = await aiohttp_client(app)
    headers = {**POLL_HEADERS, "X-Bullet-Seen": "0"}
    first = await client.get("/bullet", headers=headers, params=cache_buster())
    assert first.status == 204 and first.headers["X-Bullet-Session"] == "fresh"
    sid = first.cookies["bullet_sid"].value
    parked = asyncio.ensure_future(client.get("/bullet", headers=headers, params=cache_buster()))
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    await wait_for(lambda: endpoint.registry.get(sid).parked_polls == 1)
    assert await endpoint.hub.send(sid, "one")
    answer = await asyncio.wait_for(parked, 5)
    assert await answer.text() == "one"
    # The page never got it (the answer died in the kernel's buffer): it still says 0.
    again = await client.get("/bullet", headers=headers, params=cache_buster())
    assert await again.text() == "one"
    assert "X-Bullet-Session" not in again.headers
    seen_one = {**POLL_HEADERS, "X-Bullet-Seen": "1"}
    assert await endpoint.hub.send(sid, "two")
    third = await client.get("/bullet", headers=seen_one, params=cache_buster())
    assert await third.text() == "two"


async def test_an_original_client_poll_gets_no_new_header(aiohttp_client):
    app, _endpoint = make_app()
    client = await aiohttp_client(app)
    first = await client.get("/bullet", headers=POLL_HEADERS, params=cache_buster())
    assert first.status == 204 and "X-Bullet-Session" not in first.headers


async def test_with_resumption_off_a_dropped_websocket_ends_its_session(aiohttp_client):
    events = []
    app, endpoint = make_app(events, session_idle_timeout=30, resumable=("poll", "eventsource"))
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/bullet")
    assert "bullet_sid" not in ws._response.cookies
    await wait_for(lambda: len(endpoint.registry) == 1)
    drop(ws)
    await wait_for(lambda: closes(events) == 1)


async def test_a_poll_never_takes_from_a_live_websocket(aiohttp_client):
    app, endpoint = make_app(session_idle_timeout=30, poll_timeout=0.5)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/bullet")
    sid = ws._response.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    async with aiohttp.ClientSession() as other:
        poll = await other.get(
            client.make_url("/bullet"),
            headers={**POLL_HEADERS, "Cookie": f"bullet_sid={sid}"},
            params=cache_buster(),
        )
        assert poll.status == 204 and poll.cookies["bullet_sid"].value != sid
    assert await endpoint.hub.send(sid, "to the socket")
    assert (await ws.receive(timeout=5)).data == "to the socket"
    await ws.close()
