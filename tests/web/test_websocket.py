"""The WebSocket transport (docs/protocol.md §1.2)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bullet_py.web.wspeer import WebSocketPeer
from tests.helpers import closes, make_app, wait_for


async def test_text_frames_are_messages_both_ways(aiohttp_client):
    events = []
    app, _endpoint = make_app(events)
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        for text in ["hello", "", "é😀\r\n\x00", "x" * 70_000]:
            await ws.send_str(text)
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.TEXT
            assert msg.data == text
    await wait_for(lambda: closes(events) == 1)
    assert [e[0] for e in events].count("open") == 1


@pytest.mark.parametrize("upgrade", ["WebSocket", "WEBSOCKET"])
async def test_upgrade_token_any_case(aiohttp_client, upgrade):
    app, _ = make_app()
    client = await aiohttp_client(app)
    headers = {
        "Upgrade": upgrade,
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    resp = await client.get("/bullet", headers=headers)
    assert resp.status == 101
    resp.close()


async def test_binary_frames_are_ignored(aiohttp_client):
    events = []
    app, _ = make_app(events)
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        await ws.send_bytes(b"\x83\x61\x01")
        await ws.send_str("after")
        msg = await ws.receive(timeout=5)
        assert msg.data == "after"
    assert next(e for e in events if e[0] == "message")[2] == "after"


async def test_pushes_and_replies_keep_order(aiohttp_client):
    app, endpoint = make_app()
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        await wait_for(lambda: len(endpoint.registry) == 1)
        (conn,) = list(endpoint.registry)
        for i in range(100):
            conn.send(f"push{i}")
        for i in range(100):
            await ws.send_str(f"echo{i}")
        got = [(await ws.receive(timeout=5)).data for _ in range(200)]
    assert [g for g in got if g.startswith("push")] == [f"push{i}" for i in range(100)]
    assert [g for g in got if g.startswith("echo")] == [f"echo{i}" for i in range(100)]


async def test_pipelined_messages_each_get_one_reply_in_order(aiohttp_client):
    app, _ = make_app()
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        for i in range(1000):
            await ws.send_str(str(i))
        got = [(await ws.receive(timeout=5)).data for _ in range(1000)]
    assert got == [str(i) for i in range(1000)]


async def test_close_runs_once_when_the_client_drops(aiohttp_client):
    events = []
    app, endpoint = make_app(events)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/bullet")
    await wait_for(lambda: len(endpoint.registry) == 1)
    (conn,) = list(endpoint.registry)
    # Vanish without a close frame.
    ws._response.connection.transport.abort()
    await wait_for(lambda: closes(events, conn.session_id) == 1)
    assert len(endpoint.registry) == 0
    await ws.close()
    assert closes(events) == 1


async def test_server_side_close_sends_the_code_and_runs_close_once(aiohttp_client):
    events = []
    app, endpoint = make_app(events)
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        await wait_for(lambda: len(endpoint.registry) == 1)
        (conn,) = list(endpoint.registry)
        conn.send("last words")
        conn.close()
        assert (await ws.receive(timeout=5)).data == "last words"
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1000
    await wait_for(lambda: closes(events) == 1)


async def test_oversize_frame_closes_with_1009_counting_utf16_units(aiohttp_client):
    events = []
    app, _ = make_app(events, max_message_size=100)
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        await ws.send_str("é" * 100)  # 200 bytes, 100 units: accepted
        assert (await ws.receive(timeout=5)).data == "é" * 100
        await ws.send_str("😀" * 51)  # 102 units
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1009
    async with client.ws_connect("/bullet") as ws:
        await ws.send_str("x" * 1000)  # beyond even the byte cap
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1009
    await wait_for(lambda: closes(events) == 2)


async def test_slow_consumer_overflow_closes_with_1008(aiohttp_client):
    events = []
    app, endpoint = make_app(events, outbox_max_messages=5)
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        await wait_for(lambda: len(endpoint.registry) == 1)
        (conn,) = list(endpoint.registry)
        results = [conn.send(f"m{i}") for i in range(10)]  # no yield: the writer cannot run
        assert results[:5] == [True] * 5 and results[5] is False
        got = []
        for _ in range(20):
            msg = await ws.receive(timeout=5)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            got.append(msg.data)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008
        # What was queued before the overflow is still written, then the close.
        assert got == [f"m{i}" for i in range(5)]
    await wait_for(lambda: closes(events) == 1)


async def test_handler_errors_do_not_drop_the_connection(aiohttp_client, caplog):
    from bullet_py import Handler

    class Flaky(Handler):
        async def on_message(self, conn, message):
            if message == "boom":
                raise ValueError("boom")
            if message == "exit":
                raise SystemExit(3)
            return message

    app, _ = make_app(handler=Flaky)
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        for bad in ["boom", "exit"]:
            await ws.send_str(bad)
            await ws.send_str("ok")
            assert (await ws.receive(timeout=5)).data == "ok"
    assert "ValueError: boom" in caplog.text


async def test_hundreds_of_websockets_at_once(aiohttp_client):
    events = []
    app, _endpoint = make_app(events)
    client = await aiohttp_client(app)

    async def one(i):
        async with client.ws_connect("/bullet") as ws:
            await ws.send_str(f"c{i}")
            return (await ws.receive(timeout=10)).data

    got = await asyncio.gather(*(one(i) for i in range(300)))
    assert got == [f"c{i}" for i in range(300)]
    await wait_for(lambda: closes(events) == 300)


def _writer_tasks() -> list[asyncio.Task[object]]:
    """The WebSocket transport's writer tasks (the session's own task is not one)."""
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(getattr(task.get_coro(), "cr_code", None), "co_name", "") == "_write_queued"
    ]


async def test_an_idle_websocket_has_no_writer_task_until_a_write_needs_one(aiohttp_client):
    """The writer task costs about 1 KiB per connection: it runs only while it has work."""
    app, endpoint = make_app()
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        await wait_for(lambda: len(endpoint.registry) == 1)
        (conn,) = list(endpoint.registry)
        assert _writer_tasks() == []
        assert conn.send("small")  # written by the flush callback
        assert (await ws.receive(timeout=5)).data == "small"
        assert _writer_tasks() == []
        big = "b" * 70_000  # more than one flush writes: a writer task sends it
        assert conn.send(big)
        assert (await ws.receive(timeout=5)).data == big
        await wait_for(lambda: _writer_tasks() == [])  # and ends once the queue is empty
        assert conn.send("after")
        assert (await ws.receive(timeout=5)).data == "after"


async def test_a_reply_is_written_as_a_frame_without_a_coroutine_unless_it_may_wait(
    aiohttp_client, monkeypatch
):
    """A small reply with nothing buffered is one transport write (the flush's frame bytes);
    a reply that might wait on the peer (over 16,000 characters) is written, then drained
    under the write timeout. Either way the client reads the same message."""
    drained: list[int] = []
    original = WebSocketPeer.drain

    async def counting_drain(self):
        drained.append(self.transport.get_write_buffer_size())
        await original(self)

    monkeypatch.setattr(WebSocketPeer, "drain", counting_drain)
    app, _ = make_app()
    client = await aiohttp_client(app)
    small = ["hi", "", "é😀\r\n\x00\ufeff", "x" * 125, "x" * 126, "é" * 8000, "y" * 16_000]
    async with client.ws_connect("/bullet") as ws:
        for text in small:
            await ws.send_str(text)
            msg = await ws.receive(timeout=5)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.TEXT, text)
        assert drained == []
        big = "z" * 16_001
        await ws.send_str(big)
        assert (await ws.receive(timeout=5)).data == big
        assert len(drained) == 1


async def test_a_broadcast_frames_its_message_once_for_every_websocket(aiohttp_client, monkeypatch):
    """Each session of a broadcast holds the same str: the flush frames it once and
    writes those bytes to every socket. A session with more queued, or a second
    broadcast in the same turn of the loop, still gets exactly its own messages."""
    from bullet_py.core import frames

    framed: list[bytes] = []
    original = frames.text

    def counting_text(data: bytes) -> bytes:
        framed.append(data)
        return original(data)

    monkeypatch.setattr(frames, "text", counting_text)
    app, endpoint = make_app()
    client = await aiohttp_client(app)
    pairs = []  # (socket, its session)
    for n in range(1, 4):
        ws = await client.ws_connect("/bullet")
        client.session.cookie_jar.clear()  # three pages, three sessions
        await wait_for(lambda n=n: len(endpoint.registry) == n)
        known = {c for _, c in pairs}
        (conn,) = [c for c in endpoint.registry if c not in known]
        pairs.append((ws, conn))
    sockets = [ws for ws, _ in pairs]
    by_session = {conn.session_id: ws for ws, conn in pairs}
    (_, first), (_, second), (_, third) = pairs
    try:
        assert await endpoint.hub.broadcast("to all é😀") == 3
        for ws in sockets:
            assert await ws.receive_str(timeout=5) == "to all é😀"
        assert framed == ["to all é😀".encode()]

        framed.clear()
        assert first.send("only for the first")
        assert endpoint.hub.deliver_local("one") == 3  # first holds two: the general path
        assert [await by_session[first.session_id].receive_str(timeout=5) for _ in "12"] == [
            "only for the first",
            "one",
        ]
        for conn in (second, third):
            assert await by_session[conn.session_id].receive_str(timeout=5) == "one"
        assert framed == [b"one"]  # framed once for the two one-message sessions

        framed.clear()
        assert second.send("b") and third.send("c")  # one turn, two different messages
        assert await by_session[second.session_id].receive_str(timeout=5) == "b"
        assert await by_session[third.session_id].receive_str(timeout=5) == "c"
        assert framed == [b"b", b"c"]
    finally:
        for ws in sockets:
            await ws.close()
