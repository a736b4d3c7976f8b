"""The server bench/robustness.py attacks: raw echo at /bullet, the Stream layer at /stream.

    python bench/robustness_server.py --port 8099 [--poll-timeout 60] [--no-rate-limit]

``GET /stats`` answers the figures the bench cannot see from outside (sessions,
pending ids, tasks, close callbacks run); the bench reads RSS and descriptors
with psutil. Stops gracefully on SIGTERM/SIGINT (bullet_py.web.serve).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import logging
from typing import Any

from aiohttp import web

from bullet_py import Connection, Handler, Options, setup
from bullet_py.codec.terms import Atom
from bullet_py.router import Context, Router, ok
from bullet_py.web.endpoint import describe
from bullet_py.web.serve import run

CLOSED = {"count": 0}


class Echo(Handler):
    async def on_message(self, conn: Connection, message: str) -> str:
        return message

    async def on_close(self, conn: Connection) -> None:
        CLOSED["count"] += 1


class Character:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {"name": "Zoë", "level": 1}

    def read(self, ctx: Context, props: dict[str, Any]) -> Any:
        return ok(self.state)

    def update(self, ctx: Context, props: dict[str, Any]) -> Any:
        self.state.update(props)
        ctx.broadcast(ok(self.state))
        return ok(self.state)


def make_app(options: Options) -> web.Application:
    app = web.Application()
    echo = setup(app, "/bullet", Echo, options=options)
    router = Router(timeout=2.0)
    router.model("character", Character())

    @router.action("echo")
    def echo_action(ctx: Context, msg: Any) -> Any:
        return (Atom("echo"), msg)

    @router.action("burn")
    def burn(ctx: Context, msg: Any) -> Any:
        loop = asyncio.get_running_loop()
        end = loop.time() + 0.003
        while loop.time() < end:
            pass

    stream = setup(app, "/stream", router, options=options)

    async def stats(request: web.Request) -> web.Response:
        if request.query.get("trim"):
            # Give freed memory back to the OS first, so RSS shows what is still held
            # (a leak) rather than what the allocators keep for reuse.
            gc.collect()
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6").malloc_trim(0)
        return web.json_response(
            {
                "bullet": describe(echo),
                "stream": describe(stream),
                "closed": CLOSED["count"],
                "tasks": len(asyncio.all_tasks()),
                "parked": sum(c.parked_polls for c in echo.registry),
            }
        )

    async def push(request: web.Request) -> web.Response:
        """POST /push?n=N&size=S: broadcast N messages of S characters to /bullet."""
        n = int(request.query.get("n", "1"))
        size = int(request.query.get("size", "16"))
        text = request.query.get("text", "p") * size
        reached = 0
        for _ in range(n):
            reached = await echo.hub.broadcast(text)
        return web.json_response({"reached": reached})

    app.router.add_get("/stats", stats)
    app.router.add_post("/push", push)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--poll-timeout", type=float, default=60.0)
    parser.add_argument("--idle", type=float, default=5.0, help="session_idle_timeout")
    parser.add_argument("--write-timeout", type=float, default=2.0)
    parser.add_argument("--no-rate-limit", action="store_true")
    parser.add_argument("--max-message-size", type=int, default=1 << 20)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    # Every bench client comes from one address: no minting limit per address.
    limits: dict[str, Any] = {"session_mint_rate_per_address": None}
    if args.no_rate_limit:
        limits = {
            "post_rate_per_session": None,
            "post_rate_per_address": None,
            "session_mint_rate_per_address": None,
            "session_mint_rate_per_cookie": None,
            "ws_message_rate": None,
            "ws_control_rate": None,
        }
    options = Options(
        poll_timeout=args.poll_timeout,
        session_idle_timeout=args.idle,
        pending_session_ttl=max(args.idle, args.poll_timeout * 2),
        write_timeout=args.write_timeout,
        max_message_size=args.max_message_size,
        outbox_max_messages=256,
        **limits,
    )
    run(make_app(options), args.host, args.port)


if __name__ == "__main__":
    main()
