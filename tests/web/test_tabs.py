"""Tabs of one browser: shared cookies, and the tab id our client sends (docs/protocol.md §5.7)."""

from __future__ import annotations

import asyncio

from tests.helpers import POLL_HEADERS, POST_HEADERS, SSE_HEADERS, make_app, wait_for

TAB_A = "a" * 32
TAB_B = "b" * 32


async def first_poll(client, tab):
    resp = await client.get("/bullet", headers={**POLL_HEADERS, "X-Bullet-Tab": tab})
    assert resp.status == 204
    return resp


async def test_each_named_tab_gets_its_own_cookie_and_session(aiohttp_client):
    events = []
    app, endpoint = make_app(events, poll_timeout=30)
    client = await aiohttp_client(app)  # one cookie jar: one browser
    resp_a = await first_poll(client, TAB_A)
    resp_b = await first_poll(client, TAB_B)
    sid_a = resp_a.cookies[f"bullet_sid.{TAB_A}"].value
    sid_b = resp_b.cookies[f"bullet_sid.{TAB_B}"].value
    assert sid_a != sid_b
    raw = resp_a.headers["Set-Cookie"]
    assert "HttpOnly" in raw and "SameSite=Lax" in raw and "Max-Age=" in raw
    # Both tabs' POSTs run in their own sessions, though the jar sends both cookies.
    for tab, sid in ((TAB_A, sid_a), (TAB_B, sid_b)):
        resp = await client.post(
            "/bullet", data=f"from {tab[0]}".encode(), headers={**POST_HEADERS, "X-Bullet-Tab": tab}
        )
        assert await resp.text() == f"from {tab[0]}"
        assert ("message", sid, f"from {tab[0]}") in events
    polls = [
        asyncio.ensure_future(client.get("/bullet", headers={**POLL_HEADERS, "X-Bullet-Tab": tab}))
        for tab in (TAB_A, TAB_B)
    ]
    await wait_for(lambda: all(endpoint.registry.get(s).parked_polls == 1 for s in (sid_a, sid_b)))
    assert await endpoint.hub.broadcast("to every tab") == 2
    for poll in polls:
        resp = await poll
        assert await resp.text() == "to every tab"
        assert "Max-Age=" in resp.headers["Set-Cookie"]  # renewed while the tab lives


async def test_a_malformed_tab_id_is_ignored(aiohttp_client):
    app, _ = make_app()
    client = await aiohttp_client(app)
    for bad in ("short", "x" * 65, "a b c d e f g h", "é" * 10):
        client.session.cookie_jar.clear()
        resp = await client.get("/bullet", headers={**POLL_HEADERS, "X-Bullet-Tab": bad})
        assert resp.status == 204
        assert list(resp.cookies) == ["bullet_sid"]  # the plain cookie, as for the original client


async def test_event_stream_tab_id_travels_in_the_query(aiohttp_client):
    app, endpoint = make_app()
    client = await aiohttp_client(app)
    resp = await client.get("/bullet", params={"bullet_tab": TAB_A}, headers=SSE_HEADERS)
    assert resp.status == 200
    sid = resp.cookies[f"bullet_sid.{TAB_A}"].value
    # That tab's POSTs reach the stream's session.
    answer = await client.post(
        "/bullet", data=b"hi", headers={**POST_HEADERS, "X-Bullet-Tab": TAB_A}
    )
    assert await answer.text() == "hi"
    assert endpoint.registry.get(sid) is not None
    resp.close()


async def test_a_poll_never_takes_another_tabs_live_event_stream(aiohttp_client):
    """Original client: a polling tab sends the cookie an event-stream tab was given."""
    app, endpoint = make_app(poll_timeout=30)
    client = await aiohttp_client(app)
    stream = await client.get("/bullet", headers=SSE_HEADERS)
    sid = stream.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    poll = await client.get("/bullet", headers=POLL_HEADERS)  # the jar sends sid
    assert poll.status == 204
    assert poll.cookies["bullet_sid"].value != sid  # a session of its own
    assert endpoint.registry.get(sid).parked_polls == 0
    stream.close()
