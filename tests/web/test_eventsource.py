"""The event-stream transport (docs/protocol.md §1.5, §2.2, §2.3)."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.helpers import (
    POLL_HEADERS,
    POST_HEADERS,
    SSE_HEADERS,
    EventStreamReader,
    closes,
    make_app,
    wait_for,
)


async def open_stream(client, **kw):
    resp = await client.get("/bullet", headers=SSE_HEADERS, **kw)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    return resp, EventStreamReader(resp)


async def test_stream_carries_pushes_as_default_events(aiohttp_client):
    events = []
    app, endpoint = make_app(events)
    client = await aiohttp_client(app)
    resp, reader = await open_stream(client)
    sid = resp.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    for text in ["one", "two\nlines", "é😀\x00", " lead"]:
        await endpoint.hub.send(sid, text)
    assert [await reader.next_event() for _ in range(4)] == [
        "one",
        "two\nlines",
        "é😀\x00",
        " lead",
    ]
    resp.close()


async def test_injection_gives_exactly_one_event_with_the_payload(aiohttp_client):
    app, endpoint = make_app()
    client = await aiohttp_client(app)
    resp, reader = await open_stream(client)
    sid = resp.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    evil = "x\n\nevent: evil\ndata: y"
    await endpoint.hub.send(sid, evil)
    await endpoint.hub.send(sid, "next")
    assert await reader.next_event() == evil
    assert await reader.next_event() == "next"
    resp.close()


async def test_post_replies_come_in_the_post_answer(aiohttp_client):
    events = []
    app, _endpoint = make_app(events)
    client = await aiohttp_client(app)
    resp, _reader = await open_stream(client)
    sid = resp.cookies["bullet_sid"].value
    answer = await client.post("/bullet", data=b"hi", headers=POST_HEADERS)
    assert await answer.text() == "hi"
    assert ("message", sid, "hi") in events  # the POST ran in the stream's session
    resp.close()


async def test_cr_never_goes_out_on_a_stream_the_client_gets_it_by_polling(aiohttp_client):
    app, endpoint = make_app(poll_timeout=5)
    client = await aiohttp_client(app)
    resp, reader = await open_stream(client)
    sid = resp.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    await endpoint.hub.send(sid, "before")
    await endpoint.hub.send(sid, "a\rb\r\nc")
    await endpoint.hub.send(sid, "after")
    assert await reader.next_event() == "before"
    assert await reader.next_event() is None  # the stream ended instead
    # The client reconnects on its transport: refused before it opens, so it
    # falls back to polling, and nothing was taken from the queue.
    again = await client.get("/bullet", headers=SSE_HEADERS)
    assert again.status == 406
    conn = endpoint.registry.get(sid)
    assert list(conn.outbox) == ["a\rb\r\nc", "after"]
    got = []
    for _ in range(4):
        poll = await client.get("/bullet", headers=POLL_HEADERS)
        if poll.status == 200:
            got.append(await poll.text())
        if len(got) == 2:
            break
    assert got == ["a\rb\r\nc", "after"]


async def test_stream_end_keeps_the_session_and_its_queue(aiohttp_client):
    events = []
    app, endpoint = make_app(events, stream_lifetime=0.3, session_idle_timeout=5)
    client = await aiohttp_client(app)
    resp, reader = await open_stream(client)
    sid = resp.cookies["bullet_sid"].value
    assert await reader.next_event(timeout=5) is None  # ended by the lifetime
    await wait_for(lambda: not endpoint.registry.get(sid).attached)
    await endpoint.hub.send(sid, "while away")
    resp2, reader2 = await open_stream(client)
    assert "Set-Cookie" not in resp2.headers  # same session resumed
    assert await reader2.next_event() == "while away"
    assert [e[0] for e in events].count("open") == 1
    resp2.close()


async def test_keepalive_comments_on_an_idle_stream(aiohttp_client):
    app, _ = make_app(stream_keepalive=0.1)
    client = await aiohttp_client(app)
    resp, reader = await open_stream(client)
    task = asyncio.ensure_future(reader.next_event(timeout=5))
    await wait_for(lambda: reader.comments >= 2)
    task.cancel()
    resp.close()


async def test_dropped_stream_closes_the_session_once_after_the_idle_expiry(aiohttp_client):
    events = []
    app, endpoint = make_app(events, session_idle_timeout=0.3, stream_keepalive=0.1)
    client = await aiohttp_client(app)
    resp, _reader = await open_stream(client)
    sid = resp.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    resp.connection.transport.abort()
    await wait_for(lambda: closes(events, sid) == 1)
    assert endpoint.registry.get(sid) is None


async def test_two_streams_with_one_cookie_are_two_sessions(aiohttp_client):
    app, _endpoint = make_app()
    client = await aiohttp_client(app)
    resp1, _ = await open_stream(client)
    sid1 = resp1.cookies["bullet_sid"].value
    resp2, _ = await open_stream(client)  # the jar now sends sid1
    sid2 = resp2.cookies["bullet_sid"].value
    assert sid1 != sid2
    resp1.close()
    resp2.close()


async def test_many_concurrent_pollers(aiohttp_client):
    app, endpoint = make_app(poll_timeout=10)
    client = await aiohttp_client(app)
    url = client.make_url("/bullet")

    async def one(i):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            first = await s.get(url, headers=POLL_HEADERS)
            sid = first.cookies["bullet_sid"].value
            parked = asyncio.ensure_future(s.get(url, headers=POLL_HEADERS))
            await wait_for(lambda: getattr(endpoint.registry.get(sid), "parked_polls", 0) == 1)
            await endpoint.hub.send(sid, f"to{i}")
            resp = await parked
            return await resp.text()

    got = await asyncio.gather(*(one(i) for i in range(200)))
    assert got == [f"to{i}" for i in range(200)]
