"""Behind a TLS-terminating reverse proxy (docs/protocol.md §9).

The test client connects from 127.0.0.1, a trusted proxy by default; so its
X-Forwarded-* headers are believed unless ``trusted_proxies=()``. The app is
on a loopback socket, so the proxied host name must be in ``allowed_hosts``.
"""

from __future__ import annotations

import logging

import aiohttp
import pytest

from bullet_py.core.ratelimit import RateLimiter
from tests.helpers import POLL_HEADERS, POST_HEADERS, SSE_HEADERS, EventStreamReader, make_app

# What nginx sends for a page served over https (issue #12).
PROXIED = {
    "Host": "example.com",
    "Origin": "https://example.com",
    "X-Forwarded-Proto": "https",
}


def proxied_app(events: list | None = None, **options):  # type: ignore[no-untyped-def]
    return make_app(events, allowed_hosts=("example.com",), **options)


# --- the example, every transport -------------------------------------------------


async def test_poll_and_post_behind_a_trusted_proxy(aiohttp_client):
    events: list = []
    app, endpoint = proxied_app(events)
    client = await aiohttp_client(app)
    resp = await client.get("/bullet", headers={**POLL_HEADERS, **PROXIED})
    assert resp.status in (200, 204)
    cookie = resp.cookies["bullet_sid"]
    assert cookie["secure"] is True  # https at the browser
    sid = cookie.value
    headers = {**POST_HEADERS, **PROXIED, "Cookie": f"bullet_sid={sid}"}
    async with client.post("/bullet", data=b"hello", headers=headers) as r:
        assert r.status == 200
        assert await r.text() == "hello"
    assert ("message", sid, "hello") in events
    assert len(endpoint.registry) == 1


async def test_one_message_post_behind_a_trusted_proxy(aiohttp_client):
    app, _ = proxied_app()
    client = await aiohttp_client(app)
    async with client.post("/bullet", data=b"ping", headers={**POST_HEADERS, **PROXIED}) as r:
        assert r.status == 200
        assert await r.text() == "ping"


async def test_websocket_behind_a_trusted_proxy(aiohttp_client):
    events: list = []
    app, _ = proxied_app(events)
    client = await aiohttp_client(app)
    headers = {k: v for k, v in PROXIED.items() if k != "Origin"}
    async with client.ws_connect("/bullet", origin=PROXIED["Origin"], headers=headers) as ws:
        await ws.send_str("over wss")
        assert (await ws.receive(timeout=5)).data == "over wss"
    assert any(e[0] == "open" for e in events)


async def test_event_stream_behind_a_trusted_proxy(aiohttp_client):
    app, endpoint = proxied_app()
    client = await aiohttp_client(app)
    async with client.get("/bullet", headers={**SSE_HEADERS, **PROXIED}) as stream:
        assert stream.status == 200
        assert stream.cookies["bullet_sid"]["secure"] is True
        conn = next(iter(endpoint.registry))
        assert conn.send("pushed")
        assert await EventStreamReader(stream).next_event() == "pushed"


async def test_forwarded_rfc_7239_works_as_well(aiohttp_client):
    app, _ = proxied_app()
    client = await aiohttp_client(app)
    headers = {
        **POST_HEADERS,
        "Host": "127.0.0.1",  # what a proxy that does not pass the Host sends
        "Origin": "https://example.com",
        "Forwarded": 'for="198.51.100.7:3456";proto=https;host=example.com',
    }
    async with client.post("/bullet", data=b"ping", headers=headers) as r:
        assert r.status == 200


# --- untrusted peers ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["poll", "post", "websocket"])
async def test_an_untrusted_peers_forwarding_headers_are_ignored(aiohttp_client, kind):
    events: list = []
    app, endpoint = proxied_app(events, trusted_proxies=())
    client = await aiohttp_client(app)
    if kind == "poll":
        resp = await client.get("/bullet", headers={**POLL_HEADERS, **PROXIED})
        status = resp.status
    elif kind == "post":
        async with client.post("/bullet", data=b"x", headers={**POST_HEADERS, **PROXIED}) as r:
            status = r.status
    else:
        headers = {k: v for k, v in PROXIED.items() if k != "Origin"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/bullet", origin=PROXIED["Origin"], headers=headers)
        status = refused.value.status
    # https://example.com is not the origin of http://example.com: refused.
    assert status == 403
    assert events == [] and len(endpoint.registry) == 0 and endpoint.registry.pending_count == 0


async def test_a_forwarded_host_from_an_untrusted_peer_is_not_checked(aiohttp_client):
    app, _ = make_app(trusted_proxies=())
    client = await aiohttp_client(app)
    headers = {**POLL_HEADERS, "X-Forwarded-Host": "evil.example"}
    assert (await client.get("/bullet", headers=headers)).status in (200, 204)


async def test_cookies_are_not_secure_over_plain_http(aiohttp_client):
    app, _ = proxied_app()
    client = await aiohttp_client(app)
    headers = {
        **POLL_HEADERS,
        **PROXIED,
        "X-Forwarded-Proto": "http",
        "Origin": "http://example.com",
    }
    resp = await client.get("/bullet", headers=headers)
    assert resp.cookies["bullet_sid"]["secure"] == ""


# --- the client address -----------------------------------------------------------------------


async def post_from(client, address: str | None) -> int:  # type: ignore[no-untyped-def]
    headers = {**POST_HEADERS}
    if address is not None:
        headers["X-Forwarded-For"] = address
    async with client.post("/bullet", data=b"noreply", headers=headers) as r:
        return r.status


async def test_the_per_address_limit_sees_the_forwarded_client(aiohttp_client):
    app, endpoint = make_app()
    # One POST per address, refilled far slower than the test runs.
    endpoint.post_limits = (None, RateLimiter(0.001, burst=1))
    client = await aiohttp_client(app)
    assert await post_from(client, "198.51.100.1") == 204
    assert await post_from(client, "198.51.100.1") == 429
    assert await post_from(client, "198.51.100.2") == 204  # another client behind the proxy
    assert await post_from(client, "6.6.6.6, 198.51.100.1") == 429  # a spoofed left end
    assert await post_from(client, None) == 204  # the proxy itself (127.0.0.1)


async def test_behind_an_untrusted_peer_the_limit_sees_the_peer(aiohttp_client):
    app, endpoint = make_app(trusted_proxies=())
    endpoint.post_limits = (None, RateLimiter(0.001, burst=1))
    client = await aiohttp_client(app)
    assert await post_from(client, "198.51.100.1") == 204
    assert await post_from(client, "198.51.100.2") == 429  # both are 127.0.0.1


async def test_the_exchange_carries_the_resolved_values(aiohttp_client):
    seen: list = []
    app, endpoint = proxied_app()

    async def authorize(request):  # type: ignore[no-untyped-def]
        return "someone"

    endpoint.authorize = authorize
    original = endpoint.create_connection

    def spy(exchange, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((exchange.scheme, exchange.host, exchange.client_ip, exchange.secure))
        return original(exchange, **kwargs)

    endpoint.create_connection = spy  # type: ignore[method-assign]
    client = await aiohttp_client(app)
    headers = {**POST_HEADERS, **PROXIED, "X-Forwarded-For": "203.0.113.9"}
    async with client.post("/bullet", data=b"x", headers=headers) as r:
        assert r.status == 200
    assert seen == [("https", "example.com", "203.0.113.9", True)]


async def test_refusal_lines_name_the_forwarded_client(aiohttp_client, caplog):
    app, _ = make_app()
    client = await aiohttp_client(app)
    headers = {**POLL_HEADERS, "Origin": "https://evil.example", "X-Forwarded-For": "203.0.113.9"}
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        assert (await client.get("/bullet", headers=headers)).status == 403
    lines = [r.getMessage() for r in caplog.records if "event=cross_origin" in r.getMessage()]
    assert len(lines) == 1 and "client=203.0.113.9" in lines[0]


def test_options_refuse_a_bad_trusted_proxy_entry():
    from bullet_py import Options

    with pytest.raises(ValueError):
        Options(trusted_proxies=("proxy.example",))
    with pytest.raises(ValueError):
        Options(trusted_proxies="127.0.0.1")
    assert Options(trusted_proxies=("127.0.0.1/8", "*")).trusted_proxies == ("127.0.0.1/8", "*")
