"""Long polling and POST, as the original client speaks them (docs/protocol.md §1.3, §1.4, §5)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bullet_py import Overflow
from tests.helpers import (
    POLL_HEADERS,
    POST_HEADERS,
    cache_buster,
    closes,
    make_app,
    wait_for,
)


async def open_polling(client):
    """First GET: 204 at once with the cookie; returns the session id."""
    resp = await client.get("/bullet", headers=POLL_HEADERS, params=cache_buster())
    assert resp.status == 204
    assert await resp.read() == b""
    return resp.cookies["bullet_sid"].value


async def live_session(client, endpoint):
    """Open a polling session and make it live (its cookie came back once)."""
    sid = await open_polling(client)
    task = asyncio.ensure_future(client.get("/bullet", headers=POLL_HEADERS))
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    conn = endpoint.registry.get(sid)
    await wait_for(lambda: conn.parked_polls == 1)
    return sid, conn, task


async def test_first_get_is_answered_at_once_with_a_cookie(aiohttp_client):
    events = []
    app, endpoint = make_app(events, poll_timeout=30)
    client = await aiohttp_client(app)
    resp = await client.get("/bullet", headers=POLL_HEADERS, params=cache_buster())
    assert resp.status == 204
    raw = resp.headers.getall("Set-Cookie")
    assert len(raw) == 1
    cookie = raw[0]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/bullet" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    sid = resp.cookies["bullet_sid"].value
    assert len(sid) >= 22  # >= 128 bits in URL-safe base64
    # Pending ids cost no handler: nothing opened yet.
    assert events == []
    assert endpoint.registry.pending_count == 1


async def test_poll_waits_for_a_push_and_gets_exactly_it(aiohttp_client):
    events = []
    app, endpoint = make_app(events, poll_timeout=30)
    client = await aiohttp_client(app)
    sid, _conn, task = await live_session(client, endpoint)
    assert events[0][:2] == ("open", sid)
    await endpoint.hub.send(sid, "hello é 😀")
    resp = await asyncio.wait_for(task, 5)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert await resp.text() == "hello é 😀"


async def test_poll_timeout_answers_204(aiohttp_client):
    app, _endpoint = make_app(poll_timeout=0.2)
    client = await aiohttp_client(app)
    await open_polling(client)
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert resp.status == 204
    assert await resp.read() == b""


async def test_slow_poller_gets_every_push_in_order_once(aiohttp_client):
    app, endpoint = make_app(poll_timeout=0.5, outbox_max_messages=500)
    client = await aiohttp_client(app)
    sid, _conn, task = await live_session(client, endpoint)
    sent = [f"m{i}" for i in range(200)]
    for m in sent:
        assert await endpoint.hub.send(sid, m)
    got = [await (await task).text()]
    for _ in range(400):
        if len(got) == len(sent):
            break
        resp = await client.get("/bullet", headers=POLL_HEADERS, params=cache_buster())
        if resp.status == 200:
            got.append(await resp.text())
    assert got == sent


async def test_post_body_is_raw_text_never_a_form(aiohttp_client):
    app, _ = make_app()
    client = await aiohttp_client(app)
    body = "a=1&b=2+3%20c"
    resp = await client.post("/bullet", data=body.encode(), headers=POST_HEADERS)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert await resp.text() == body


async def test_post_without_reply_is_204(aiohttp_client):
    app, _ = make_app()
    client = await aiohttp_client(app)
    resp = await client.post("/bullet", data=b"noreply", headers=POST_HEADERS)
    assert resp.status == 204


async def test_post_with_cookie_runs_in_that_session(aiohttp_client):
    events = []
    app, endpoint = make_app(events, poll_timeout=30)
    client = await aiohttp_client(app)
    sid, conn, task = await live_session(client, endpoint)
    resp = await client.post("/bullet", data=b"hi", headers=POST_HEADERS)
    assert await resp.text() == "hi"
    assert ("message", sid, "hi") in events
    assert [e for e in events if e[0] == "open"] == [("open", sid, conn.transport)]
    task.cancel()


async def test_post_right_after_the_first_204_wakes_the_pending_session(aiohttp_client):
    events = []
    app, endpoint = make_app(events)
    client = await aiohttp_client(app)
    sid = await open_polling(client)
    resp = await client.post("/bullet", data=b"first", headers=POST_HEADERS)
    assert await resp.text() == "first"
    assert events[0][:2] == ("open", sid)
    assert events[1] == ("message", sid, "first")
    assert endpoint.registry.get(sid) is not None


async def test_cookieless_post_gets_a_one_message_handler(aiohttp_client):
    events = []
    app, endpoint = make_app(events)
    client = await aiohttp_client(app)
    resp = await client.post("/bullet", data=b"x", headers=POST_HEADERS)
    assert await resp.text() == "x"
    assert [e[0] for e in events] == ["open", "message", "close"]
    assert len(endpoint.registry) == 0
    assert "Set-Cookie" not in resp.headers


async def test_bom_gets_one_extra_on_xhr_answers(aiohttp_client):
    app, endpoint = make_app(poll_timeout=30)
    client = await aiohttp_client(app)
    sid, _conn, task = await live_session(client, endpoint)
    await endpoint.hub.send(sid, "\ufeffbom")
    resp = await task
    assert await resp.read() == "\ufeff\ufeffbom".encode()
    resp = await client.post("/bullet", data="\ufeffpost".encode(), headers=POST_HEADERS)
    assert await resp.read() == "\ufeff\ufeffpost".encode()


async def test_empty_message_cannot_travel_by_xhr_and_is_skipped(aiohttp_client):
    app, endpoint = make_app(poll_timeout=30)
    client = await aiohttp_client(app)
    sid, conn, task = await live_session(client, endpoint)
    conn.outbox.offer("", drop_oldest=False)  # queued ahead of the real one
    await endpoint.hub.send(sid, "after")
    resp = await task
    assert await resp.text() == "after"
    resp = await client.post("/bullet", data=b"", headers=POST_HEADERS)
    assert resp.status == 204


async def test_unknown_or_forged_cookie_gets_a_fresh_session(aiohttp_client):
    app, endpoint = make_app()
    client = await aiohttp_client(app)
    forged = "A" * 32
    client.session.cookie_jar.update_cookies({"bullet_sid": forged})
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert resp.status == 204
    new = resp.cookies["bullet_sid"].value
    assert new != forged
    assert endpoint.registry.get(forged) is None


async def test_aborted_poll_loses_nothing(aiohttp_client):
    """A poll whose client left never takes a message; the next poll gets it."""
    app, endpoint = make_app(poll_timeout=30)
    client = await aiohttp_client(app)
    sid = await open_polling(client)
    cookie = {"bullet_sid": sid}
    url = client.make_url("/bullet")
    async with aiohttp.ClientSession(cookies=cookie) as other:
        parked = asyncio.ensure_future(other.get(url, headers=POLL_HEADERS))
        await wait_for(lambda: endpoint.registry.get(sid) is not None)
        conn = endpoint.registry.get(sid)
        await wait_for(lambda: conn.parked_polls == 1)
        parked.cancel()
    # The aborted GET's socket is closed; its poll must not swallow M.
    await wait_for(lambda: all(not p.alive() for p in conn.core.polls))
    await endpoint.hub.send(sid, "M")
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert resp.status == 200
    assert await resp.text() == "M"


async def raw_parked_get(client, sid):
    """A GET sent on a raw socket, so the test controls when its client vanishes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        (
            "GET /bullet HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Cookie: bullet_sid={sid}\r\nX-Socket-Transport: xhrPolling\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    return reader, writer


async def test_failed_write_puts_the_message_back_at_the_head(aiohttp_client):
    """The client leaves after M was handed to its poll: M goes back, first."""
    app, endpoint = make_app(poll_timeout=30)
    client = await aiohttp_client(app)
    sid = await open_polling(client)
    _reader, writer = await raw_parked_get(client, sid)
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    conn = endpoint.registry.get(sid)
    await wait_for(lambda: conn.parked_polls == 1)
    poll = conn.core.polls[0]
    poll.alive = lambda: True  # the race: still looked alive at hand-over
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.05)  # let the server see the FIN (no event to await)
    assert await endpoint.hub.send(sid, "first")
    await endpoint.hub.send(sid, "second")
    await wait_for(lambda: conn.parked_polls == 0 and len(conn.outbox) == 2)
    got = []
    for _ in range(4):
        resp = await client.get("/bullet", headers=POLL_HEADERS)
        if resp.status == 200:
            got.append(await resp.text())
        if len(got) == 2:
            break
    assert got == ["first", "second"]


async def test_two_tabs_share_a_session_and_each_message_arrives_once(aiohttp_client):
    app, endpoint = make_app(poll_timeout=30)
    client = await aiohttp_client(app)
    sid, conn, first = await live_session(client, endpoint)
    second = asyncio.ensure_future(client.get("/bullet", headers=POLL_HEADERS))
    await wait_for(lambda: conn.parked_polls == 2)
    await endpoint.hub.send(sid, "a")
    await endpoint.hub.send(sid, "b")
    bodies = sorted([await (await first).text(), await (await second).text()])
    assert bodies == ["a", "b"]


async def test_parked_polls_per_session_are_capped_oldest_answered_204(aiohttp_client):
    app, endpoint = make_app(poll_timeout=30, max_polls_per_session=2)
    client = await aiohttp_client(app)
    sid, conn, first = await live_session(client, endpoint)
    second = asyncio.ensure_future(client.get("/bullet", headers=POLL_HEADERS))
    await wait_for(lambda: conn.parked_polls == 2)
    third = asyncio.ensure_future(client.get("/bullet", headers=POLL_HEADERS))
    resp = await asyncio.wait_for(first, 5)
    assert resp.status == 204
    await endpoint.hub.send(sid, "x")
    await endpoint.hub.send(sid, "y")
    assert sorted([await (await second).text(), await (await third).text()]) == ["x", "y"]


async def test_head_never_parks_or_dequeues(aiohttp_client):
    app, endpoint = make_app(poll_timeout=30)
    client = await aiohttp_client(app)
    sid = await open_polling(client)
    resp = await client.post("/bullet", data=b"noreply", headers=POST_HEADERS)
    assert resp.status == 204
    assert await endpoint.hub.send(sid, "M")
    resp = await client.head("/bullet")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, POST"
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert await resp.text() == "M"


@pytest.mark.parametrize("policy", [Overflow.CLOSE, Overflow.DROP_OLDEST, Overflow.DROP_NEWEST])
async def test_queue_bound_and_overflow_policy(aiohttp_client, caplog, policy):
    events = []
    app, endpoint = make_app(events, poll_timeout=30, outbox_max_messages=3, overflow=policy)
    client = await aiohttp_client(app)
    sid = await open_polling(client)
    resp = await client.post("/bullet", data=b"noreply-open", headers=POST_HEADERS)
    assert resp.status == 204
    results = [await endpoint.hub.send(sid, f"m{i}") for i in range(5)]
    assert "event=queue_overflow" in caplog.text
    if policy is Overflow.CLOSE:
        assert results == [True, True, True, False, False]
        await wait_for(lambda: closes(events, sid) == 1)
        assert endpoint.registry.get(sid) is None
        return
    conn = endpoint.registry.get(sid)
    expected = ["m2", "m3", "m4"] if policy is Overflow.DROP_OLDEST else ["m0", "m1", "m2"]
    assert list(conn.outbox) == expected


async def test_idle_polling_session_expires_and_closes_once(aiohttp_client):
    events = []
    app, endpoint = make_app(events, poll_timeout=0.1, session_idle_timeout=0.3)
    client = await aiohttp_client(app)
    sid = await open_polling(client)
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert resp.status == 204  # the session came alive and timed out empty
    await wait_for(lambda: closes(events, sid) == 1)
    assert endpoint.registry.get(sid) is None
    # Expired: the cookie is now unknown, answered like no cookie.
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert resp.status == 204 and resp.cookies["bullet_sid"].value != sid
    assert closes(events, sid) == 1


async def test_pending_ids_expire_and_are_bounded(aiohttp_client):
    app, endpoint = make_app(pending_session_ttl=0.3, max_pending_sessions=5)
    client = await aiohttp_client(app)
    for _ in range(8):
        async with aiohttp.ClientSession() as fresh:  # no cookie jar shared
            resp = await fresh.get(client.make_url("/bullet"), headers=POLL_HEADERS)
            assert resp.status == 204
    assert endpoint.registry.pending_count == 5
    await wait_for(lambda: endpoint.registry.pending_count == 0)
    assert len(endpoint.registry) == 0


async def test_session_limit_answers_503(aiohttp_client):
    app, _endpoint = make_app(max_sessions=1)
    client = await aiohttp_client(app)
    await open_polling(client)
    resp = await client.post("/bullet", data=b"noreply", headers=POST_HEADERS)
    assert resp.status == 204
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        url = client.make_url("/bullet")
        resp = await other.get(url, headers=POLL_HEADERS)
        assert resp.status == 204
        resp = await other.get(url, headers=POLL_HEADERS)
        assert resp.status == 503
        assert resp.headers["Retry-After"]


async def test_oversize_post_is_413_and_limit_counts_utf16_units(aiohttp_client):
    app, _endpoint = make_app(max_message_size=100)
    client = await aiohttp_client(app)
    at_limit = "é" * 100  # 200 bytes on the wire, 100 units
    resp = await client.post("/bullet", data=at_limit.encode(), headers=POST_HEADERS)
    assert resp.status == 200 and await resp.text() == at_limit
    resp = await client.post("/bullet", data=("é" * 101).encode(), headers=POST_HEADERS)
    assert resp.status == 413
    resp = await client.post("/bullet", data=("😀" * 51).encode(), headers=POST_HEADERS)
    assert resp.status == 413
    resp = await client.post("/bullet", data=b"x" * 10_000, headers=POST_HEADERS)
    assert resp.status == 413


async def test_bad_utf8_and_compressed_bodies_are_refused(aiohttp_client):
    app, _ = make_app()
    client = await aiohttp_client(app)
    resp = await client.post("/bullet", data=b"\xff\xfe", headers=POST_HEADERS)
    assert resp.status == 400
    headers = {**POST_HEADERS, "Content-Encoding": "gzip"}
    resp = await client.post("/bullet", data=b"\x1f\x8b", headers=headers)
    assert resp.status == 415
