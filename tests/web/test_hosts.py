"""Host checking: DNS rebinding against a loopback server, allowed_hosts (docs/protocol.md §9).

A page on evil.example whose name is made to resolve to 127.0.0.1 sends
``Host: evil.example:P`` and ``Origin: http://evil.example:P``: same origin
as far as the Origin check can tell. Only the Host check refuses it.
"""

from __future__ import annotations

import logging
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from tests.helpers import POLL_HEADERS, POST_HEADERS, SSE_HEADERS, make_app


def rebinding(port: int) -> dict[str, str]:
    return {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}


async def attempt(client, kind: str, headers: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    """The status of one request of ``kind`` with ``headers``."""
    if kind == "post":
        async with client.post("/bullet", data=b"hello", headers={**POST_HEADERS, **headers}) as r:
            return r.status
    if kind == "poll":
        return (await client.get("/bullet", headers={**POLL_HEADERS, **headers})).status
    if kind == "eventsource":
        async with client.get("/bullet", headers={**SSE_HEADERS, **headers}) as r:
            return r.status
    rest = {k: v for k, v in headers.items() if k != "Origin"}
    try:
        ws = await client.ws_connect("/bullet", origin=headers.get("Origin"), headers=rest)
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status
    await ws.close()
    return 101


KINDS = ["post", "poll", "eventsource", "websocket"]


@pytest.mark.parametrize("kind", KINDS)
async def test_dns_rebinding_against_a_loopback_server_is_refused(aiohttp_client, caplog, kind):
    events: list = []
    app, endpoint = make_app(events)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        status = await attempt(client, kind, rebinding(client.port))
    assert status == 421
    assert events == []  # no on_open, no message
    assert len(endpoint.registry) == 0 and endpoint.registry.pending_count == 0
    assert sum("event=bad_host reason=host " in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_loopback_names_are_served_by_default(aiohttp_client, kind):
    app, _ = make_app()
    client = await aiohttp_client(app)
    port = client.port
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"[::1]:{port}",
        f"app.localhost:{port}",
    ):
        status = await attempt(client, kind, {"Host": host, "Origin": f"http://{host}"})
        assert status in (200, 204, 101), (host, status)


async def test_a_wrong_host_is_refused_before_the_method_and_origin_checks(aiohttp_client):
    app, _ = make_app()
    client = await aiohttp_client(app)
    resp = await client.put("/bullet", headers={"Host": "evil.example"})
    assert resp.status == 421  # not 405
    resp = await client.options("/bullet", headers={"Host": "evil.example", "Origin": "x"})
    assert resp.status == 421
    resp = await client.get("/bullet", headers={**POLL_HEADERS, "Host": "evil.example"})
    assert resp.status == 421 and "Set-Cookie" not in resp.headers


async def test_a_refused_post_closes_its_connection(aiohttp_client):
    app, _ = make_app()
    client = await aiohttp_client(app)
    headers = {**POST_HEADERS, **rebinding(client.port)}
    async with client.post("/bullet", data=b"x" * 100_000, headers=headers) as r:
        assert r.status == 421
        assert r.headers["Connection"].lower() == "close"  # the body is never read


async def test_a_forged_forwarded_host_does_not_open_the_door(aiohttp_client):
    """A rebinding page may add X-Forwarded-Host itself (same origin, no preflight).

    The browser is on loopback, a trusted proxy by default, so the header is
    believed: the host check passes, but the Origin check then compares the
    page's origin with the forwarded host, and refuses.
    """
    app, endpoint = make_app()
    client = await aiohttp_client(app)
    headers = {**rebinding(client.port), "X-Forwarded-Host": f"localhost:{client.port}"}
    assert await attempt(client, "post", headers) == 403
    assert len(endpoint.registry) == 0


async def test_behind_a_trusted_proxy_the_forwarded_host_is_checked(aiohttp_client, caplog):
    app, _ = make_app(allowed_hosts=("example.com",))
    client = await aiohttp_client(app)
    good = {"Host": "127.0.0.1", "X-Forwarded-Host": "example.com"}
    assert await attempt(client, "poll", good) in (200, 204)
    bad = {"Host": "example.com", "X-Forwarded-Host": "evil.example"}
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        assert await attempt(client, "poll", bad) == 421
    assert any("event=bad_host reason=forwarded_host" in r.getMessage() for r in caplog.records)


async def test_allowed_hosts_patterns_replace_the_loopback_default(aiohttp_client):
    app, _ = make_app(allowed_hosts=(".example.com",))
    client = await aiohttp_client(app)
    assert await attempt(client, "post", {"Host": "example.com"}) == 200
    assert await attempt(client, "post", {"Host": "chat.example.com:8443"}) == 200
    assert await attempt(client, "post", {"Host": f"127.0.0.1:{client.port}"}) == 421
    assert await attempt(client, "post", {"Host": "badexample.com"}) == 421


async def test_allowed_hosts_star_serves_any_name(aiohttp_client):
    app, _ = make_app(allowed_hosts=("*",))
    client = await aiohttp_client(app)
    assert await attempt(client, "post", rebinding(client.port)) == 200


def request_on(sockname: object, host: str):  # type: ignore[no-untyped-def]
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: {
        "sockname": sockname,
        "peername": ("198.51.100.7", 50000),
    }.get(name, default)
    return make_mocked_request("GET", "/bullet", headers={"Host": host}, transport=transport)


@pytest.mark.parametrize(
    ("sockname", "served"),
    [
        (("127.0.0.1", 8080), False),
        (("::1", 8080, 0, 0), False),
        (("0.0.0.0", 8080), True),  # bound to every address: any name (set allowed_hosts)
        (("192.0.2.10", 8080), True),
        ("/run/bullet.sock", True),  # a unix socket: a proxy is in front
    ],
)
def test_the_default_depends_on_the_servers_own_socket(sockname, served):
    _, endpoint = make_app()
    request = request_on(sockname, "intranet.example:8080")
    assert endpoint._host_ok(request, endpoint.resolve_peer(request)) is served
    loopback_name = request_on(sockname, "localhost:8080")
    assert endpoint._host_ok(loopback_name, endpoint.resolve_peer(loopback_name))
