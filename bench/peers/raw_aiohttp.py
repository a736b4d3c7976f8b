"""Raw aiohttp: the baseline every other figure is divided by.

The least code a plain aiohttp app needs to serve the benchmark's workloads on
the same wire as Bullet, at ``/bullet``:

- WebSocket (``Upgrade: websocket``): each text frame is echoed, except
  ``push:K`` (send K frames of the payload, awaiting each send) and
  ``bcast:X`` (send X to every open WebSocket in a plain loop);
- ``GET`` with ``Accept: text/event-stream``: an event stream of the client's queue;
- other ``GET``: a long poll taking one message from the client's queue (204
  after 60 s), the first one without a cookie answered 204 with a cookie;
- ``POST``: the body is a message; echoed in the answer, or ``push:K`` queues K.

No limits, no origin checks, no handler layer, no timeouts on writes: it is the
floor, not a server anyone should deploy. aiohttp settings: all defaults.

    python bench/peers/raw_aiohttp.py --host 127.0.0.1 --port 8080
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets

from _serve import PAYLOAD, parse, run
from aiohttp import WSMsgType, web

POLL_TIMEOUT = 60.0


class Client:
    """One polling or event-stream client: a queue and whoever waits on it."""

    __slots__ = ("queue", "waiter")

    def __init__(self) -> None:
        self.queue: collections.deque[str] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def put(self, message: str) -> None:
        self.queue.append(message)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self, timeout: float) -> bool:
        if self.queue:
            return True
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self.waiter, timeout)
        except TimeoutError:
            return False
        finally:
            self.waiter = None
        return True


sockets: set[web.WebSocketResponse] = set()
clients: dict[str, Client] = {}


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sockets.add(ws)
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            data: str = msg.data
            if data.startswith("push:"):
                for _ in range(int(data[5:])):
                    await ws.send_str(PAYLOAD)
            elif data.startswith("bcast:"):
                text = data[6:]
                for other in list(sockets):
                    with contextlib.suppress(ConnectionError):
                        await other.send_str(text)
            else:
                await ws.send_str(data)
    except ConnectionError:
        pass
    finally:
        sockets.discard(ws)
    return ws


def new_client(response: web.StreamResponse) -> str:
    cid = secrets.token_urlsafe(24)
    clients[cid] = Client()
    response.set_cookie("raw_sid", cid, path="/bullet", httponly=True)
    return cid


async def poll(request: web.Request) -> web.StreamResponse:
    client = clients.get(request.cookies.get("raw_sid", ""))
    if client is None:
        response = web.Response(status=204)
        new_client(response)
        return response
    if not await client.wait(POLL_TIMEOUT):
        return web.Response(status=204)
    return web.Response(text=client.queue.popleft())


async def event_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    cid = new_client(response)
    client = clients[cid]
    await response.prepare(request)
    try:
        while True:
            await client.wait(15.0)
            while client.queue:
                await response.write(b"data: " + client.queue.popleft().encode() + b"\n\n")
    except ConnectionError:
        pass
    finally:
        clients.pop(cid, None)
    return response


async def send(request: web.Request) -> web.Response:
    data = await request.text()
    client = clients.get(request.cookies.get("raw_sid", ""))
    if data.startswith("push:") and client is not None:
        for _ in range(int(data[5:])):
            client.put(PAYLOAD)
        return web.Response(status=204)
    return web.Response(text=data)


async def endpoint(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await websocket(request)
    if request.method == "POST":
        return await send(request)
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await event_stream(request)
    return await poll(request)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/bullet", endpoint)
    return app


if __name__ == "__main__":
    args = parse(__doc__ or "")
    run(make_app(), args.host, args.port, args.loop)
