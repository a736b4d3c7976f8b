"""python-socketio on aiohttp, as small as the benchmark allows.

Events (Socket.IO over Engine.IO v4, path ``/socket.io/``):
``echo`` → emitted back to the sender; ``push`` K → K ``p`` events of the
payload to the sender; ``bcast`` X → ``b`` X to everyone.

Settings: ``socketio.AsyncServer(async_mode="aiohttp")``, everything else at
its default (ping every 25 s, HTTP compression of polling answers over
1,024 bytes, handlers run as tasks, same-origin CORS check, loggers off).

    python bench/peers/socketio_server.py --host 127.0.0.1 --port 8080
"""

from __future__ import annotations

from typing import Any

import socketio
from _serve import PAYLOAD, parse, run
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp")


@sio.on("echo")
async def echo(sid: str, data: Any) -> None:
    await sio.emit("echo", data, to=sid)


@sio.on("push")
async def push(sid: str, count: int) -> None:
    for _ in range(int(count)):
        await sio.emit("p", PAYLOAD, to=sid)


@sio.on("bcast")
async def bcast(sid: str, data: Any) -> None:
    await sio.emit("b", data)


def make_app() -> web.Application:
    app = web.Application()
    sio.attach(app)
    return app


if __name__ == "__main__":
    args = parse(__doc__ or "")
    run(make_app(), args.host, args.port, args.loop)
