"""The app the multi-process tests run on each worker (``examples/cluster.py --app``).

Every WebSocket session is told its id first (``sid:<id>``), so a test can push
to it; a session another worker takes over is told ``resumed:<id>``. Each
session's end is printed (``ledger_closed <id>``).
Messages: ``send:<sid>:<text>`` pushes ``text`` to that session, wherever it
lives; ``bcast:<text>`` pushes to everyone; anything else is echoed.
"""

from __future__ import annotations

import os

from aiohttp import web

from bullet_py import Broker, Connection, Handler, Options, Transport, setup


class Ledger(Handler):
    async def on_open(self, conn: Connection) -> None:
        if conn.transport is Transport.WEBSOCKET:
            conn.send(f"sid:{conn.session_id}")

    async def on_resume(self, conn: Connection) -> None:
        # A session taken over from a worker that died or stopped: said, so tests see it.
        conn.send(f"resumed:{conn.session_id}")

    async def on_close(self, conn: Connection) -> None:
        print(f"ledger_closed {conn.session_id}", flush=True)  # tests wait for the line

    async def on_message(self, conn: Connection, message: str) -> str | None:
        if message.startswith("send:"):
            _, session_id, text = message.split(":", 2)
            await conn.hub.send(session_id, text)
            return None
        if message.startswith("bcast:"):
            await conn.hub.broadcast(message[6:])
            return None
        return message


def make_app(*, broker: Broker) -> web.Application:
    options = Options(
        poll_timeout=float(os.environ.get("LEDGER_POLL_TIMEOUT", "2")),
        session_idle_timeout=float(os.environ.get("LEDGER_IDLE_TIMEOUT", "30")),
        pending_session_ttl=30.0,
        shutdown_timeout=3.0,
        post_rate_per_session=None,
        post_rate_per_address=None,
    )
    app = web.Application()
    setup(app, "/bullet", Ledger, options=options, broker=broker)
    return app
