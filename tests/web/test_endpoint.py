"""Transport choice, methods, origins, the hub and shutdown (docs/protocol.md §1.1, §9, §11)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bullet_py import CloseReason
from tests.helpers import (
    POLL_HEADERS,
    POST_HEADERS,
    SSE_HEADERS,
    EventStreamReader,
    closes,
    make_app,
    wait_for,
)

WS_HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@pytest.mark.parametrize("upgrade", ["h2c", "foo", "websocket, foo", ""])
async def test_unknown_upgrade_is_501_with_an_empty_body(aiohttp_client, upgrade):
    app, _ = make_app()
    client = await aiohttp_client(app)
    resp = await client.get("/bullet", headers={"Upgrade": upgrade, "Connection": "Upgrade"})
    assert resp.status == 501
    assert await resp.read() == b""


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"])
async def test_other_methods_are_405_with_allow(aiohttp_client, method):
    events = []
    app, endpoint = make_app(events)
    client = await aiohttp_client(app)
    resp = await client.request(method, "/bullet")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, POST"
    assert events == [] and endpoint.registry.pending_count == 0


async def test_bad_websocket_handshakes_are_400(aiohttp_client):
    app, _ = make_app()
    client = await aiohttp_client(app)
    no_key = {k: v for k, v in WS_HANDSHAKE.items() if k != "Sec-WebSocket-Key"}
    resp = await client.get("/bullet", headers=no_key)
    assert resp.status == 400
    resp = await client.get("/bullet", headers={**WS_HANDSHAKE, "Sec-WebSocket-Version": "8"})
    assert resp.status == 426
    assert resp.headers["Sec-WebSocket-Version"] == "13"


async def test_disabled_transports_are_refused_before_they_open(aiohttp_client):
    app, _ = make_app(websocket=False, eventsource=False)
    client = await aiohttp_client(app)
    resp = await client.get("/bullet", headers=WS_HANDSHAKE)
    assert resp.status == 501
    resp = await client.get("/bullet", headers=SSE_HEADERS)
    assert resp.status == 406
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert resp.status == 204
    app, _ = make_app(polling=False)
    client = await aiohttp_client(app)
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert resp.status == 405


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "https://127.0.0.1", "http://127.0.0.1:1"]
)
async def test_cross_origin_websocket_is_403_before_the_upgrade(aiohttp_client, origin):
    events = []
    app, _ = make_app(events)
    client = await aiohttp_client(app)
    resp = await client.get("/bullet", headers={**WS_HANDSHAKE, "Origin": origin})
    assert resp.status == 403
    assert events == []


async def test_same_origin_websocket_is_accepted(aiohttp_client):
    app, _ = make_app()
    client = await aiohttp_client(app)
    origin = f"http://127.0.0.1:{client.port}"
    async with client.ws_connect("/bullet", origin=origin) as ws:
        await ws.send_str("x")
        assert (await ws.receive(timeout=5)).data == "x"


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"],
)
async def test_cross_origin_post_is_403_and_the_handler_is_not_called(aiohttp_client, content_type):
    events = []
    app, _ = make_app(events)
    client = await aiohttp_client(app)
    for headers in (
        {"Origin": "https://evil.example", "Content-Type": content_type},
        {"Sec-Fetch-Site": "cross-site", "Content-Type": content_type},
    ):
        resp = await client.post("/bullet", data=b"payload", headers=headers)
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    assert events == []


async def test_an_origin_verdict_is_for_its_own_host_scheme_and_fetch_site(aiohttp_client):
    """Verdicts are remembered per (Origin, Sec-Fetch-Site, scheme, Host): never lent to another."""
    app, _ = make_app(allowed_hosts=["a.example", "b.example"])
    client = await aiohttp_client(app)

    async def status(host: str, **more: str) -> int:
        headers = {**POST_HEADERS, "Host": host, "Origin": "http://a.example", **more}
        async with client.post("/bullet", data=b"x", headers=headers) as resp:
            return resp.status

    for _ in range(2):  # the second round answers from what the first remembered
        assert await status("a.example") == 200
        assert await status("b.example") == 403
        assert await status("a.example", **{"Sec-Fetch-Site": "cross-site"}) == 403
        assert await status("a.example", **{"X-Forwarded-Proto": "https"}) == 403


async def test_cross_origin_get_is_403_and_dequeues_nothing(aiohttp_client):
    app, endpoint = make_app(poll_timeout=30)
    client = await aiohttp_client(app)
    first = await client.get("/bullet", headers=POLL_HEADERS)
    sid = first.cookies["bullet_sid"].value
    await client.post("/bullet", data=b"noreply", headers=POST_HEADERS)
    await endpoint.hub.send(sid, "M")
    for headers in (
        {**POLL_HEADERS, "Origin": "https://evil.example"},
        {**POLL_HEADERS, "Sec-Fetch-Site": "cross-site"},
        {**SSE_HEADERS, "Origin": "https://evil.example"},
    ):
        resp = await client.get("/bullet", headers=headers)
        assert resp.status == 403
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert await resp.text() == "M"


async def test_allowed_foreign_origin_gets_cors_without_wildcards(aiohttp_client):
    app, _ = make_app(allowed_origins=["https://app.example"])
    client = await aiohttp_client(app)
    pre = await client.options(
        "/bullet",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert pre.headers["Access-Control-Allow-Credentials"] == "true"
    resp = await client.post("/bullet", data=b"x", headers={"Origin": "https://app.example"})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    bad = await client.options("/bullet", headers={"Origin": "https://evil.example"})
    assert bad.status == 405
    assert "Access-Control-Allow-Origin" not in bad.headers


async def test_missing_origin_setting(aiohttp_client):
    app, _ = make_app(allow_missing_origin=False)
    client = await aiohttp_client(app)
    resp = await client.post("/bullet", data=b"x")
    assert resp.status == 403


async def test_hub_reaches_one_a_group_or_everyone_and_info(aiohttp_client):
    events = []
    app, endpoint = make_app(events)
    client = await aiohttp_client(app)
    pairs = []  # (socket, its server-side connection)
    for n in range(1, 4):
        ws = await client.ws_connect("/bullet")
        client.session.cookie_jar.clear()  # three pages, three sessions (no resuming)
        await wait_for(lambda n=n: len(endpoint.registry) == n)
        known = {c for _, c in pairs}
        (conn,) = [c for c in endpoint.registry if c not in known]
        pairs.append((ws, conn))
    (ws_a, a), (ws_b, b), (ws_c, c) = pairs
    a.join("room")
    b.join("room")
    assert await endpoint.hub.broadcast("to room", group="room", exclude=b.session_id) == 1
    assert await endpoint.hub.broadcast("to all") == 3
    assert await endpoint.hub.send(c.session_id, "to one")
    assert await endpoint.hub.info(c.session_id, 7)
    assert not await endpoint.hub.send("no-such-session", "x")

    async def read(ws, count):
        return [(await ws.receive(timeout=5)).data for _ in range(count)]

    assert await read(ws_a, 2) == ["to room", "to all"]
    assert await read(ws_b, 1) == ["to all"]
    assert await read(ws_c, 3) == ["to all", "to one", "info:7"]
    b.leave("room")
    assert await endpoint.hub.broadcast("again", group="room") == 1
    assert await read(ws_a, 1) == ["again"]
    for ws, _ in pairs:
        await ws.close()
    await wait_for(lambda: closes(events) == 3)


async def test_graceful_shutdown(aiohttp_server):
    events = []
    app, endpoint = make_app(events, poll_timeout=30)
    server = await aiohttp_server(app)
    url = server.make_url("/bullet")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        first = await s.get(url, headers=POLL_HEADERS)
        sid = first.cookies["bullet_sid"].value
        parked = asyncio.ensure_future(s.get(url, headers=POLL_HEADERS))
        ws = await s.ws_connect(url)
        s.cookie_jar.clear()  # the stream is another page's, with a session of its own
        stream = await s.get(url, headers=SSE_HEADERS)
        reader = EventStreamReader(stream)
        await wait_for(lambda: len(endpoint.registry) == 3)
        await wait_for(lambda: endpoint.registry.get(sid).parked_polls == 1)
        closing = asyncio.ensure_future(server.close())
        resp = await asyncio.wait_for(parked, 10)
        assert resp.status == 204
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CloseReason.GOING_AWAY
        assert await reader.next_event(timeout=10) is None
        await asyncio.wait_for(closing, 10)
    assert closes(events) == 3
    assert len(endpoint.registry) == 0
