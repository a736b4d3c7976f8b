"""A lone surrogate in what the application sends becomes U+FFFD, on every transport.

A Python ``str`` may hold one; UTF-8 cannot. Before, a reply holding one was
a 500 (POST) or an exception out of the WebSocket reader, and a push holding
one stopped the session's queue behind it. Now each transport sends U+FFFD in
its place (a surrogate pair held as two code points is joined), and what
follows arrives.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bullet_py import Connection, Handler
from bullet_py.core.text import utf8, well_formed
from bullet_py.web.sendtext import send_text
from tests.helpers import (
    POLL_HEADERS,
    POST_HEADERS,
    SSE_HEADERS,
    EventStreamReader,
    make_app,
    wait_for,
)
from tests.web.test_polling import live_session

LONE = "a\ud800b"
SHOWN = "a\ufffdb"


class _Lone(Handler):
    """Replies and pushes a lone surrogate when asked, else echoes."""

    async def on_message(self, conn: Connection, message: str) -> str | None:
        if message == "reply":
            return LONE
        if message == "push":
            conn.send(LONE)
            conn.send("after")
            return None
        return message


def test_utf8_and_well_formed() -> None:
    assert utf8("é😀") == "é😀".encode()
    assert utf8(LONE) == SHOWN.encode()
    assert utf8("\udc00\ud800") == "\ufffd\ufffd".encode()
    assert well_formed("\ud83d\ude00") == "😀"  # a pair held as two code points: joined
    assert well_formed("plain") == "plain"


async def test_websocket_reply_and_push(aiohttp_client: Any) -> None:
    app, _endpoint = make_app(handler=_Lone)
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        await ws.send_str("reply")
        assert await ws.receive_str(timeout=5) == SHOWN
        await ws.send_str("push")
        assert await ws.receive_str(timeout=5) == SHOWN
        assert await ws.receive_str(timeout=5) == "after"  # the queue moved on
        await ws.send_str("still")
        assert await ws.receive_str(timeout=5) == "still"


async def test_websocket_push_sent_by_the_writer_task(aiohttp_client: Any) -> None:
    """A message too big for the flush goes through send_str; a lone surrogate there too."""
    app, endpoint = make_app(handler=_Lone)
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        await ws.send_str("hello")
        assert await ws.receive_str(timeout=5) == "hello"
        (conn,) = list(endpoint.registry)
        big = "x" * 70_000 + "\ud800"
        assert conn.send(big)
        assert conn.send("after")
        assert await ws.receive_str(timeout=5) == "x" * 70_000 + "\ufffd"
        assert await ws.receive_str(timeout=5) == "after"


async def test_post_reply(aiohttp_client: Any) -> None:
    app, endpoint = make_app(handler=_Lone, poll_timeout=30)
    client = await aiohttp_client(app)
    _sid, _conn, task = await live_session(client, endpoint)
    answer = await client.post("/bullet", data=b"reply", headers=POST_HEADERS)
    assert answer.status == 200
    assert await answer.text() == SHOWN
    task.cancel()


async def test_parked_poll_answer(aiohttp_client: Any) -> None:
    app, endpoint = make_app(handler=_Lone, poll_timeout=30)
    client = await aiohttp_client(app)
    sid, _conn, task = await live_session(client, endpoint)
    await endpoint.hub.send(sid, LONE)
    resp = await asyncio.wait_for(task, 5)
    assert resp.status == 200
    assert await resp.text() == SHOWN
    await endpoint.hub.send(sid, "after")
    following = await client.get("/bullet", headers=POLL_HEADERS)
    assert await following.text() == "after"


async def test_event_stream_push(aiohttp_client: Any) -> None:
    app, endpoint = make_app(handler=_Lone)
    client = await aiohttp_client(app)
    resp = await client.get("/bullet", headers=SSE_HEADERS)
    assert resp.status == 200
    reader = EventStreamReader(resp)
    sid = resp.cookies["bullet_sid"].value
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    await endpoint.hub.send(sid, LONE)
    await endpoint.hub.send(sid, "after")
    assert await reader.next_event() == SHOWN
    assert await reader.next_event() == "after"
    resp.close()


class _FakeSocket:
    """Encodes as aiohttp's send_str does, before writing anything."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(text.encode("utf-8"))


async def test_send_text_sends_u_fffd_where_send_str_would_raise() -> None:
    ws = _FakeSocket()
    await send_text(ws, LONE)  # type: ignore[arg-type]
    await send_text(ws, "ok")  # type: ignore[arg-type]
    assert ws.sent == [SHOWN.encode(), b"ok"]
