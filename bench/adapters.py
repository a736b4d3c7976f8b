"""Protocol adapters: one client connection of each wire the benchmark speaks.

Every adapter has the same four coroutines, so each workload is written once
and drives every server the same way:

- ``connect()``: open the connection (handshakes included) and return once
  the server would deliver a message to it;
- ``send(text)``: send one message (``push:K`` and ``bcast:X`` are the
  benchmark's commands; anything else is echoed by every server);
- ``recv()``: the next message the server sent, in order;
- ``close()``: release everything; never raises.

Polling and event-stream adapters read in a background task into an inbox;
WebSocket adapters read the socket directly in ``recv()``. Polling adapters
send every request through :mod:`leanhttp` (a bare keep-alive connection per
lane) rather than aiohttp's client, so that the load generator costs far less
per request than any server; WebSockets and event streams use aiohttp's.

The wires:

- ``BulletWS``: Bullet's WebSocket (one text frame per message); raw aiohttp
  speaks it too.
- ``BulletPoll``: Bullet's long polling as the original ``bullet.js`` does it
  (docs/protocol.md §1.7): a ``GET`` always held open, answered with one message or
  204, the next ``GET`` sent at once or ``pause`` seconds later (the original
  client waits 100 ms); a ``POST`` per message, whose non-empty answer is a
  message; one cookie jar per client.
- ``BulletSSE``: Bullet's event stream to receive, ``POST`` to send, sharing
  the stream's cookie.
- ``OriginalWS`` / ``OriginalPoll`` / ``OriginalSSE``: the same wires against
  the original Erlang Bullet (bench/peers/erlang), which has no sessions: no
  cookie handshake before polling, and a ``push:K`` command is simply echoed
  (in push mode that server pushes unasked), so its echo is dropped.
- ``SioWS`` / ``SioPoll``: Socket.IO v5 packets over Engine.IO v4, written by
  hand (no socket.io client library): ``42["echo",text]`` and friends.
- ``SockjsWS``: sockjs's raw WebSocket (``/sockjs/websocket``, plain frames).
- ``SockjsXHR``: sockjs's xhr-polling (``POST .../xhr`` held open, answered
  ``a[...]`` with every queued message; ``POST .../xhr_send`` to send).

No adapter offers compression (no permessage-deflate, ``Accept-Encoding:
identity``), so every server does the same work per byte; see
docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.cookies
import json
import secrets
from typing import Any

import aiohttp
import leanhttp
from yarl import URL

BOM = "\ufeff"

# What the original bullet.js (jQuery 1.x) sends with its XHRs.
POLL_HEADERS = {
    "X-Socket-Transport": "xhrPolling",
    "X-Requested-With": "XMLHttpRequest",
    "Accept": "text/plain, */*; q=0.01",
    "Accept-Encoding": "identity",
}
POST_HEADERS = {
    "X-Socket-Transport": "xhrPolling",
    "X-Requested-With": "XMLHttpRequest",
    "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
    "Accept-Encoding": "identity",
}
SSE_HEADERS = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
PLAIN_HEADERS = {"Accept-Encoding": "identity"}

NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


class Closed(ConnectionError):
    """The server closed the connection, or answered with an error."""


class Client:
    """One connection to a server, whatever its wire."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http  # shared, for connections that need no cookie jar of their own
        self.base = base

    async def connect(self) -> None:
        raise NotImplementedError

    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def recv(self) -> str:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class Jar:
    """One client's cookies for the one server it talks to, as a browser keeps them.

    Names and values only (every request goes to the same origin and path).
    aiohttp's ``CookieJar`` would do the same job at several times the cost
    per request, which the load generator, not the server, would pay.
    """

    __slots__ = ("_seen", "values", "version")

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.version = 0  # bumped on every change, so callers can cache headers
        self._seen: tuple[str, ...] = ()

    def update(self, set_cookie: tuple[str, ...]) -> None:
        """Take an answer's ``Set-Cookie`` lines."""
        if not set_cookie or set_cookie == self._seen:
            return
        self._seen = set_cookie
        for line in set_cookie:
            parsed: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            parsed.load(line)
            for name, morsel in parsed.items():
                if morsel["max-age"] == "0":
                    self.values.pop(name, None)
                else:
                    self.values[name] = morsel.value
        self.version += 1

    def headers(self, base: dict[str, str]) -> dict[str, str]:
        if not self.values:
            return base
        cookie = "; ".join(f"{name}={value}" for name, value in self.values.items())
        return {**base, "Cookie": cookie}


class _Inbox(Client):
    """Messages read by a background task, handed to ``recv()`` in order."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        super().__init__(http, base)
        self._inbox: collections.deque[str] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.jar = Jar()

    def _deliver(self, message: str) -> None:
        self._inbox.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> str:
        while not self._inbox:
            if self._error is not None:
                raise Closed(repr(self._error))
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._inbox.popleft()

    def _start(self, reader: Any) -> None:
        """Run ``reader`` (the poll or stream loop) until close() or an error."""
        task = asyncio.get_running_loop().create_task(reader)
        task.add_done_callback(self._reader_done)
        self._task = task

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._fail(Closed("reader cancelled"))
        elif (exc := task.exception()) is not None:
            self._fail(exc)
        else:
            self._fail(Closed("reader ended"))

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class _Polling(_Inbox):
    """The two XHRs a page keeps: a poll held open on one lane, sends on others.

    Every request goes out on a :class:`leanhttp.Lane` (a bare keep-alive
    connection), never through aiohttp's client: see leanhttp's docstring.
    Request heads are built once per cookie change.
    """

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        super().__init__(http, base)
        origin = URL(base)
        self._address = (origin.raw_host or "127.0.0.1", origin.port or 80)
        self.poll_lane = leanhttp.Lane(*self._address)
        self._lanes = [self.poll_lane]
        self._spare: list[leanhttp.Lane] = []
        self._heads: dict[tuple[str, str, int | None], tuple[int, bytes]] = {}

    def head(self, method: str, url: URL, base: dict[str, str], length: int | None) -> bytes:
        key = (method, str(url), length)
        cached = self._heads.get(key)
        if cached is not None and cached[0] == self.jar.version:
            return cached[1]
        head = leanhttp.request_head(method, url, self.jar.headers(base), length)
        if len(self._heads) > 64:
            self._heads.clear()
        self._heads[key] = (self.jar.version, head)
        return head

    async def poll(self, method: str, url: URL, base: dict[str, str]) -> leanhttp.Reply:
        """One request on the poll lane (no body but an empty one for a ``POST``)."""
        length = 0 if method == "POST" else None
        reply = await self.poll_lane.request(self.head(method, url, base, length))
        self.jar.update(reply.cookies)
        return reply

    async def post(self, url: URL, base: dict[str, str], body: bytes) -> leanhttp.Reply:
        """One ``POST`` on a lane of its own (a spare one when there is one)."""
        if self._spare:
            lane = self._spare.pop()
        else:
            lane = leanhttp.Lane(*self._address)
            self._lanes.append(lane)
        try:
            reply = await lane.request(self.head("POST", url, base, len(body)), body)
        finally:
            self._spare.append(lane)
        self.jar.update(reply.cookies)
        return reply

    async def close(self) -> None:
        await super().close()
        for lane in self._lanes:
            lane.close()


async def _ws_connect(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(
        url, compress=0, autoping=True, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=2)
    )


async def _ws_text(ws: aiohttp.ClientWebSocketResponse) -> str:
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            data: str = msg.data
            return data
        if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
            continue
        raise Closed(f"websocket {msg.type.name}")


class _WS(Client):
    path = ""

    ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self) -> None:
        self.ws = await _ws_connect(self.http, self.base + self.path)

    async def send(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    async def recv(self) -> str:
        assert self.ws is not None
        return await _ws_text(self.ws)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)


# --- Bullet (and raw aiohttp, which speaks the same wire) --------------------


class BulletWS(_WS):
    path = "/bullet"


class BulletPoll(_Polling):
    """The original client's long polling; ``pause`` between an answer and the next GET."""

    def __init__(self, http: aiohttp.ClientSession, base: str, pause: float = 0.0) -> None:
        super().__init__(http, base)
        self.pause = pause
        self.url = URL(base + "/bullet")

    async def connect(self) -> None:
        # The first GET carries no cookie: the server answers 204 with one.
        reply = await self.poll("GET", self.url, POLL_HEADERS)
        if reply.status not in (200, 204):
            raise Closed(f"first poll: {reply.status}")
        if reply.status == 200:
            self._deliver_body(reply.text())
        self._start(self._poll_forever())

    def _deliver_body(self, body: str) -> None:
        if body.startswith(BOM):  # an XHR strips one leading BOM
            body = body[1:]
        if body:
            self._deliver(body)

    async def _poll_forever(self) -> None:
        url, pause = self.url, self.pause
        while not self._closing:
            reply = await self.poll("GET", url, POLL_HEADERS)
            if reply.status == 200:
                self._deliver_body(reply.text())
            elif reply.status != 204:
                raise Closed(f"poll: {reply.status}")
            if pause:
                await asyncio.sleep(pause)

    async def send(self, text: str) -> None:
        reply = await self.post(self.url, POST_HEADERS, text.encode())
        if reply.status == 200:
            self._deliver_body(reply.text())
        elif reply.status != 204:
            raise Closed(f"post: {reply.status}")


class BulletSSE(_Inbox):
    """Event stream to receive; POST (same cookie) to send."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        super().__init__(http, base)
        self.url = URL(base + "/bullet")

    async def connect(self) -> None:
        response = await self.http.get(self.url, headers=SSE_HEADERS)
        self.jar.update(tuple(response.headers.getall("Set-Cookie", ())))
        if response.status != 200 or response.content_type != "text/event-stream":
            response.release()
            raise Closed(f"event stream: {response.status} {response.content_type}")
        self._start(self._read_forever(response))

    async def _read_forever(self, response: aiohttp.ClientResponse) -> None:
        buffer = b""
        try:
            async for chunk in response.content.iter_any():
                buffer += chunk
                while (end := buffer.find(b"\n\n")) >= 0:
                    event, buffer = buffer[:end], buffer[end + 2 :]
                    lines = [
                        line[6:] if line.startswith(b"data: ") else line[5:]
                        for line in event.split(b"\n")
                        if line.startswith(b"data:")
                    ]
                    if lines:
                        self._deliver(b"\n".join(lines).decode())
        finally:
            response.release()

    async def send(self, text: str) -> None:
        async with self.http.post(
            self.url, data=text.encode(), headers=self.jar.headers(POST_HEADERS)
        ) as response:
            self.jar.update(tuple(response.headers.getall("Set-Cookie", ())))
            if response.status == 200:
                body = await response.text(encoding="utf-8")
                if body:
                    self._deliver(body)
            elif response.status != 204:
                raise Closed(f"post: {response.status}")


# --- the original Erlang Bullet (bench/peers/erlang) ------------------------


class _DropsCommandEcho(Client):
    """Skip the echo of a ``push:K`` command (the original Bullet echoes every message).

    Its push mode pushes to every connection unasked, endlessly; the workload
    still sends its commands, as it does to every server, and this drops their
    echoes so that only pushed messages are counted.
    """

    async def recv(self) -> str:
        while True:
            text = await super().recv()
            if not text.startswith("push:"):
                return text


class OriginalWS(_DropsCommandEcho, BulletWS):
    pass


class OriginalPoll(_DropsCommandEcho, BulletPoll):
    """Long polling without a session: every ``GET`` is held until there is a message."""

    async def connect(self) -> None:
        # No cookie to fetch first: the loop's first GET is already a poll.
        self._start(self._poll_forever())


class OriginalSSE(_DropsCommandEcho, BulletSSE):
    pass


# --- python-socketio: Socket.IO v5 over Engine.IO v4, spoken raw -------------


def sio_event(text: str) -> str:
    """The Socket.IO EVENT packet (type 4 + 2) for one benchmark message."""
    if text.startswith("push:"):
        args: list[Any] = ["push", int(text[5:])]
    elif text.startswith("bcast:"):
        args = ["bcast", text[6:]]
    else:
        args = ["echo", text]
    return "42" + json.dumps(args, separators=(",", ":"))


def sio_data(packet: str) -> str | None:
    """The first argument of an EVENT packet; None for any other packet."""
    if packet.startswith("42"):
        args = json.loads(packet[2:])
        return str(args[1]) if len(args) > 1 else ""
    return None


class SioWS(_WS):
    path = "/socket.io/?EIO=4&transport=websocket"

    async def connect(self) -> None:
        await super().connect()
        assert self.ws is not None
        opened = await asyncio.wait_for(_ws_text(self.ws), 10)
        if not opened.startswith("0"):
            raise Closed(f"engine.io open: {opened[:40]!r}")
        await self.ws.send_str("40")  # Socket.IO CONNECT to the default namespace
        while True:
            packet = await asyncio.wait_for(_ws_text(self.ws), 10)
            if packet.startswith("40"):
                return
            if packet.startswith("44"):
                raise Closed(f"socket.io connect refused: {packet[:80]!r}")

    async def send(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(sio_event(text))

    async def recv(self) -> str:
        assert self.ws is not None
        while True:
            packet = await _ws_text(self.ws)
            data = sio_data(packet)
            if data is not None:
                return data
            if packet == "2":  # Engine.IO ping: answer pong
                await self.ws.send_str("3")
            elif packet.startswith(("1", "41")):
                raise Closed("socket.io closed")


class SioPoll(_Polling):
    async def connect(self) -> None:
        opening = URL(self.base + "/socket.io/?EIO=4&transport=polling", encoded=True)
        reply = await self.poll("GET", opening, PLAIN_HEADERS)
        body = reply.text()
        if reply.status != 200 or not body.startswith("0"):
            raise Closed(f"engine.io open: {reply.status} {body[:40]!r}")
        sid = json.loads(body[1:])["sid"]
        self.url = URL(self.base + f"/socket.io/?EIO=4&transport=polling&sid={sid}", encoded=True)
        self._connected = asyncio.get_running_loop().create_future()
        await self._post("40")
        self._start(self._poll_forever())
        await asyncio.wait_for(asyncio.shield(self._connected), 10)

    async def _post(self, body: str) -> None:
        reply = await self.post(self.url, PLAIN_HEADERS, body.encode())
        if reply.status != 200:
            raise Closed(f"engine.io post: {reply.status}")

    async def _poll_forever(self) -> None:
        url = self.url
        while not self._closing:
            reply = await self.poll("GET", url, PLAIN_HEADERS)
            body = reply.text()
            if reply.status != 200:
                raise Closed(f"engine.io poll: {reply.status}")
            for packet in body.split("\x1e"):
                data = sio_data(packet)
                if data is not None:
                    self._deliver(data)
                elif packet == "2":
                    await self._post("3")
                elif packet.startswith("40"):
                    if not self._connected.done():
                        self._connected.set_result(None)
                elif packet.startswith(("1", "41", "44")):
                    raise Closed(f"socket.io closed: {packet[:40]!r}")

    async def send(self, text: str) -> None:
        await self._post(sio_event(text))


# --- sockjs (aio-libs) --------------------------------------------------------


class SockjsWS(_WS):
    path = "/sockjs/websocket"


class SockjsXHR(_Polling):
    async def connect(self) -> None:
        base = self.base + f"/sockjs/000/{secrets.token_hex(8)}"
        self.poll_url = URL(base + "/xhr")
        self.send_url = URL(base + "/xhr_send")
        reply = await self.poll("POST", self.poll_url, PLAIN_HEADERS)
        body = reply.text()
        if reply.status != 200 or not body.startswith("o"):
            raise Closed(f"sockjs open: {reply.status} {body[:40]!r}")
        self._start(self._poll_forever())

    async def _poll_forever(self) -> None:
        url = self.poll_url
        while not self._closing:
            reply = await self.poll("POST", url, PLAIN_HEADERS)
            body = reply.text()
            if reply.status != 200:
                raise Closed(f"sockjs poll: {reply.status}")
            if body.startswith("a"):
                for message in json.loads(body[1:]):
                    self._deliver(message)
            elif body.startswith("c"):
                raise Closed(f"sockjs closed: {body[:60]!r}")
            # "h" (heartbeat) and "o" (open) carry no message

    async def send(self, text: str) -> None:
        reply = await self.post(self.send_url, PLAIN_HEADERS, json.dumps([text]).encode())
        if reply.status != 204:
            raise Closed(f"sockjs send: {reply.status}")
