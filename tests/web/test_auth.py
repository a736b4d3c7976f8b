"""The authorize hook: refuse before any session or upgrade exists, or attach an identity."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bullet_py import Connection, Handler, Options, Refused, setup
from tests.helpers import FAST, POLL_HEADERS, POST_HEADERS, SSE_HEADERS, EventStreamReader

TOKEN = "Bearer sesame"


class Who(Handler):
    """Records (callback, identity) and echoes the identity back."""

    def __init__(self, events: list[tuple[str, Any]]) -> None:
        self.events = events

    def on_open(self, conn: Connection) -> None:
        self.events.append(("open", conn.identity))

    def on_message(self, conn: Connection, message: str) -> str:
        self.events.append(("message", conn.identity))
        return f"{message} from {conn.identity}"

    def on_close(self, conn: Connection) -> None:
        self.events.append(("close", conn.identity))


class Gate:
    """An authorize hook: a user name for the right token, else a refusal. Counts its calls."""

    def __init__(self, *, asynchronous: bool = False) -> None:
        self.calls = 0
        self.open = True
        self.asynchronous = asynchronous

    def check(self, request: web.Request) -> str:
        self.calls += 1
        token = request.headers.get("Authorization") or request.query.get("token")
        if not self.open:
            raise Refused(403, "revoked")
        if token != TOKEN and token != "sesame":
            raise Refused(401, "no_token", headers={"WWW-Authenticate": "Bearer"})
        return "alice"

    def __call__(self, request: web.Request) -> Any:
        if not self.asynchronous:
            return self.check(request)

        async def later() -> str:
            return self.check(request)

        return later()


def app_with(authorize: Any, events: list) -> tuple[web.Application, Any]:  # type: ignore[type-arg]
    app = web.Application()
    endpoint = setup(
        app, "/bullet", lambda: Who(events), options=Options(**FAST), authorize=authorize
    )
    return app, endpoint


def nothing_created(endpoint: Any, events: list) -> bool:  # type: ignore[type-arg]
    registry = endpoint.registry
    return events == [] and len(registry) == 0 and registry.pending_count == 0


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("kind", ["poll", "post", "eventsource"])
async def test_a_refusal_creates_nothing(aiohttp_client, caplog, kind, asynchronous):
    events: list = []
    app, endpoint = app_with(Gate(asynchronous=asynchronous), events)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        if kind == "poll":
            resp = await client.get("/bullet", headers=POLL_HEADERS)
        elif kind == "post":
            resp = await client.post("/bullet", data=b"hi", headers=POST_HEADERS)
        else:
            resp = await client.get("/bullet", headers=SSE_HEADERS)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert "Set-Cookie" not in resp.headers
        if kind == "post":  # refused before its body was read: the connection is closed
            assert resp.headers["Connection"].lower() == "close"
        resp.close()
    assert nothing_created(endpoint, events)
    assert sum("event=unauthorized reason=no_token" in r.getMessage() for r in caplog.records) == 1


async def test_a_websocket_handshake_is_refused_before_the_upgrade(aiohttp_client):
    events: list = []
    app, endpoint = app_with(Gate(), events)
    client = await aiohttp_client(app)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/bullet")
    assert refused.value.status == 401
    assert nothing_created(endpoint, events)


async def test_returning_none_is_a_refusal(aiohttp_client):
    events: list = []
    app, endpoint = app_with(lambda request: None, events)
    client = await aiohttp_client(app)
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert resp.status == 401
    assert nothing_created(endpoint, events)


async def test_a_failing_hook_is_a_500_and_creates_nothing(aiohttp_client, caplog):
    events: list = []

    def broken(request: web.Request) -> str:
        raise RuntimeError("database down")

    app, endpoint = app_with(broken, events)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        resp = await client.post("/bullet", data=b"hi", headers=POST_HEADERS)
    assert resp.status == 500
    assert nothing_created(endpoint, events)
    assert any("event=authorize_failed" in r.getMessage() for r in caplog.records)


async def test_cheaper_refusals_come_first(aiohttp_client):
    gate = Gate()
    app, _ = app_with(gate, [])
    client = await aiohttp_client(app)
    assert (await client.put("/bullet")).status == 405
    assert (await client.get("/bullet", headers={"Host": "evil.example"})).status == 421
    headers = {**POLL_HEADERS, "Origin": "https://evil.example"}
    assert (await client.get("/bullet", headers=headers)).status == 403
    assert gate.calls == 0


def test_refused_is_a_protocol_error_with_a_4xx_status():
    from bullet_py import ProtocolError

    refused = Refused(403, "banned")
    assert isinstance(refused, ProtocolError)
    assert (refused.status_hint, refused.event, refused.reason) == (403, "unauthorized", "banned")
    with pytest.raises(ValueError):
        Refused(200)


# --- identities -------------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_the_identity_is_on_the_connection_over_websocket(aiohttp_client, asynchronous):
    events: list = []
    app, _ = app_with(Gate(asynchronous=asynchronous), events)
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet", headers={"Authorization": TOKEN}) as ws:
        await ws.send_str("hi")
        assert (await ws.receive(timeout=5)).data == "hi from alice"
    assert events[:2] == [("open", "alice"), ("message", "alice")]


async def test_the_identity_over_polling_and_every_request_is_checked(aiohttp_client):
    events: list = []
    gate = Gate()
    app, endpoint = app_with(gate, events)
    client = await aiohttp_client(app)
    auth = {"Authorization": TOKEN}
    resp = await client.get("/bullet", headers={**POLL_HEADERS, **auth})
    assert resp.status in (200, 204)
    async with client.post("/bullet", data=b"hi", headers={**POST_HEADERS, **auth}) as r:
        assert await r.text() == "hi from alice"
    assert ("open", "alice") in events and ("message", "alice") in events
    assert gate.calls == 2
    # The same session without credentials, or after they are revoked: refused, untouched.
    before = list(events)
    async with client.post("/bullet", data=b"again", headers=POST_HEADERS) as r:
        assert r.status == 401
    gate.open = False
    async with client.post("/bullet", data=b"again", headers={**POST_HEADERS, **auth}) as r:
        assert r.status == 403
    assert (await client.get("/bullet", headers={**POLL_HEADERS, **auth})).status == 403
    assert events == before and len(endpoint.registry) == 1
    assert gate.calls == 5


async def test_the_identity_over_an_event_stream(aiohttp_client):
    events: list = []
    app, endpoint = app_with(Gate(asynchronous=True), events)
    client = await aiohttp_client(app)
    async with client.get("/bullet?token=sesame", headers=SSE_HEADERS) as stream:
        assert stream.status == 200
        conn = next(iter(endpoint.registry))
        assert conn.identity == "alice"
        conn.send("hello alice")
        assert await EventStreamReader(stream).next_event() == "hello alice"
    assert events[0] == ("open", "alice")


async def test_without_a_hook_the_identity_is_none(aiohttp_client):
    events: list = []
    app, _ = app_with(None, events)
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        await ws.send_str("hi")
        assert (await ws.receive(timeout=5)).data == "hi from None"
