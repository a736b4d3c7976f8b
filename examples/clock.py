"""Clock, after Bullet's own example: every session gets the time each second.

    python examples/clock.py --host 127.0.0.1 --port 8080

Endpoint ``/bullet``. Each session is pushed the current time as RFC 1123 text
(``Thu, 26 Nov 2026 06:07:50 GMT``) every second; ``ping: NAME`` is answered
``pong``. One timer task for the whole server pushes to every session through
the hub, so a slow client never delays the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from email.utils import formatdate

from _args import add_metrics, parse
from aiohttp import web

from bullet_py import Connection, Handler, add_static_js, setup
from bullet_py.web.serve import run


class Clock(Handler):
    async def on_message(self, conn: Connection, message: str) -> str | None:
        if message.startswith("ping: "):
            return "pong"
        return None


def make_app(interval: float = 1.0) -> web.Application:
    app = web.Application()
    endpoint = setup(app, "/bullet", Clock)
    add_static_js(app)
    add_metrics(app)

    async def tick(_: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                await endpoint.hub.broadcast(formatdate(usegmt=True))

        task = asyncio.get_running_loop().create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(tick)
    return app


if __name__ == "__main__":
    args = parse(__doc__ or "")
    run(make_app(), args.host, args.port)
