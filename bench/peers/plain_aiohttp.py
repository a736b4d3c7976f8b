"""Plain aiohttp: the least WebSocket echo server aiohttp allows.

``web.WebSocketResponse()`` with its defaults and ``async for msg in ws:
await ws.send_str(msg.data)``, on ``GET /bullet``: nothing else. It serves the
WebSocket echo and idle-connection rows only (it has no ``push:K`` or
``bcast:X``, no polling). ``raw_aiohttp.py``, the baseline every ratio is
taken against, serves every workload from one handler; this one shows what
that generality costs (docs/benchmarks.md, "The two aiohttp baselines").

    python bench/peers/plain_aiohttp.py --host 127.0.0.1 --port 8080
"""

from __future__ import annotations

from _serve import parse, run
from aiohttp import web


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        await ws.send_str(msg.data)
    return ws


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/bullet", websocket)
    return app


if __name__ == "__main__":
    args = parse(__doc__ or "")
    run(make_app(), args.host, args.port, args.loop)
