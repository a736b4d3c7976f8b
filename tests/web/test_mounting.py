"""Mounting as aiohttp users do: on a sub-application, behind the app's own middlewares.

``setup(sub, "/bullet", Handler)`` on an application mounted with
``app.add_subapp("/chat", sub)`` serves every transport at ``/chat/bullet``,
its cookie scoped to that path, the browser files under ``/chat/js/``, and
its startup and shutdown run with the parent's. In front of it, an
authentication middleware refuses before anything exists, and aiohttp-session's
middleware lets every answer through. A catch-all route registered first does
not hide the endpoint: the route form is enough (README "Mounting it").
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp_session import SimpleCookieStorage, get_session, session_middleware

from bullet_py import Connection, Handler, Options, Transport, add_static_js, setup
from tests.helpers import (
    FAST,
    POLL_HEADERS,
    POST_HEADERS,
    SSE_HEADERS,
    EventStreamReader,
    Recorder,
    closes,
    wait_for,
)

# --- a sub-application ---------------------------------------------------------------


async def home(request: web.Request) -> web.Response:
    return web.Response(text="the single-page app")


def chat_app(events: list[tuple[str, str, Any]]) -> tuple[web.Application, Any]:
    sub = web.Application()
    endpoint = setup(sub, "/bullet", lambda: Recorder(events), options=Options(**FAST))
    add_static_js(sub)
    app = web.Application()
    app.router.add_get("/", home)
    app.add_subapp("/chat", sub)
    return app, endpoint


async def test_a_sub_application_serves_every_transport_under_its_prefix(aiohttp_client):
    events: list[tuple[str, str, Any]] = []
    app, endpoint = chat_app(events)
    client = await aiohttp_client(app, cookie_jar=aiohttp.CookieJar(unsafe=True))

    resp = await client.get("/chat/js/bullet.js")
    assert resp.status == 200 and len(await resp.read()) > 100
    assert (await client.get("/bullet", headers=POLL_HEADERS)).status == 404  # not at the root

    async with client.ws_connect("/chat/bullet") as ws:
        await ws.send_str("over websocket")
        assert await ws.receive_str(timeout=5) == "over websocket"

    first = await client.get("/chat/bullet", headers=POLL_HEADERS)
    assert first.status == 204
    cookie = first.cookies["bullet_sid"]
    assert cookie["path"] == "/chat/bullet"  # sent back to the endpoint only
    resp = await client.post("/chat/bullet", data=b"over polling", headers=POST_HEADERS)
    assert (resp.status, await resp.text()) == (200, "over polling")

    client.session.cookie_jar.clear()  # a new page: its own session on an event stream
    stream = await client.get("/chat/bullet", headers=SSE_HEADERS)
    assert stream.status == 200
    await wait_for(lambda: any(e[0] == "open" and e[2] is Transport.EVENTSOURCE for e in events))
    sid = next(e[1] for e in events if e[0] == "open" and e[2] is Transport.EVENTSOURCE)
    await endpoint.hub.send(sid, "over an event stream")
    assert await EventStreamReader(stream).next_event() == "over an event stream"
    stream.close()

    opened = {e[1] for e in events if e[0] == "open"}
    assert len(opened) == 3
    await client.close()  # the parent's shutdown and cleanup reach the sub-application's
    assert {e[1] for e in events if e[0] == "close"} == opened
    assert closes(events) == 3


async def test_the_origin_check_under_a_prefix_is_the_page_origin(aiohttp_client):
    app, _ = chat_app([])
    client = await aiohttp_client(app)
    origin = str(client.make_url("/")).rstrip("/")
    resp = await client.get("/chat/bullet", headers={**POLL_HEADERS, "Origin": origin})
    assert resp.status == 204
    resp = await client.get("/chat/bullet", headers={**POLL_HEADERS, "Origin": "http://evil.test"})
    assert resp.status == 403


# --- behind the app's own middlewares --------------------------------------------------------


USER = web.RequestKey("user", str)


class WhoAsks(Handler):
    """Echoes with the user the app's middleware put on the request, and records it."""

    def __init__(self, events: list[tuple[str, Any]]) -> None:
        self.events = events

    async def on_open(self, conn: Connection) -> None:
        self.events.append(("open", conn.request.get(USER)))

    async def on_message(self, conn: Connection, message: str) -> str:
        return f"{message} from {conn.request.get(USER)}"


@web.middleware
async def require_login(request: web.Request, handler: Any) -> web.StreamResponse:
    """The app's own authentication: a cookie, or 401 before any handler runs."""
    if request.cookies.get("auth") != "sesame":
        raise web.HTTPUnauthorized(text="log in first")
    request[USER] = "alice"
    return await handler(request)


async def test_an_auth_middleware_refuses_before_anything_exists(aiohttp_client):
    events: list[tuple[str, Any]] = []
    app = web.Application(middlewares=[require_login])
    endpoint = setup(app, "/bullet", lambda: WhoAsks(events), options=Options(**FAST))
    client = await aiohttp_client(app, cookie_jar=aiohttp.CookieJar(unsafe=True))

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/bullet")
    assert refused.value.status == 401
    for resp in [
        await client.get("/bullet", headers=POLL_HEADERS),
        await client.get("/bullet", headers=SSE_HEADERS),
        await client.post("/bullet", data=b"hello", headers=POST_HEADERS),
    ]:
        assert resp.status == 401
        assert "bullet_sid" not in resp.cookies
    assert events == [] and len(endpoint.registry) == 0

    client.session.cookie_jar.update_cookies({"auth": "sesame"})
    async with client.ws_connect("/bullet") as ws:
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=5) == "hi from alice"
    assert (await client.get("/bullet", headers=POLL_HEADERS)).status == 204
    resp = await client.post("/bullet", data=b"hello", headers=POST_HEADERS)
    assert (resp.status, await resp.text()) == (200, "hello from alice")
    assert events == [("open", "alice"), ("open", "alice")]


class SessionUser(Handler):
    """Reads the user from the app's aiohttp-session session."""

    async def on_message(self, conn: Connection, message: str) -> str:
        session = await get_session(conn.request)
        return f"{message} from {session.get('user')}"


async def login(request: web.Request) -> web.Response:
    session = await get_session(request)
    session["user"] = "bob"
    return web.Response(text="ok")


# aiohttp-session keeps its storage under a string key, which aiohttp 3.14 warns about.
@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
async def test_behind_aiohttp_session_every_answer_goes_through(aiohttp_client, caplog):
    caplog.set_level(logging.ERROR)
    app = web.Application(middlewares=[session_middleware(SimpleCookieStorage())])
    app.router.add_post("/login", login)
    endpoint = setup(app, "/bullet", SessionUser, options=Options(**FAST))
    client = await aiohttp_client(app, cookie_jar=aiohttp.CookieJar(unsafe=True))
    assert (await client.post("/login")).status == 200

    async with client.ws_connect("/bullet") as ws:
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=5) == "hi from bob"
    assert (await client.get("/bullet", headers=POLL_HEADERS)).status == 204
    resp = await client.post("/bullet", data=b"hello", headers=POST_HEADERS)
    assert (resp.status, await resp.text()) == (200, "hello from bob")
    # A poll answered with a pushed message (a streamed answer), then an event stream.
    sid = next(iter(endpoint.registry)).session_id
    await endpoint.hub.send(sid, "pushed")
    resp = await client.get("/bullet", headers=POLL_HEADERS)
    assert (resp.status, await resp.text()) == (200, "pushed")
    stream = await client.get("/bullet", headers=SSE_HEADERS)
    await endpoint.hub.send(sid, "streamed")
    assert await EventStreamReader(stream).next_event() == "streamed"
    stream.close()
    # Refusals, including one that closes its connection (a POST for a wrong Host).
    resp = await client.post("/bullet", data=b"x", headers={**POST_HEADERS, "Host": "evil.test"})
    assert resp.status == 421
    resp = await client.get("/bullet", headers={**POLL_HEADERS, "Origin": "http://evil.test"})
    assert resp.status == 403
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- beside the app's other routes -----------------------------------------------------------


async def test_a_catch_all_route_registered_first_does_not_hide_the_endpoint(aiohttp_client):
    app = web.Application()
    app.router.add_get("/{tail:.*}", home)
    setup(app, "/bullet", lambda: Recorder([]), options=Options(**FAST))
    client = await aiohttp_client(app)
    assert await (await client.get("/anything/else")).text() == "the single-page app"
    assert (await client.get("/bullet", headers=POLL_HEADERS)).status == 204
    async with client.ws_connect("/bullet") as ws:
        await ws.send_str("still the endpoint")
        assert await ws.receive_str(timeout=5) == "still the endpoint"
