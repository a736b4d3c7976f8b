"""The Bullet server of the push, broadcast and idle workloads.

Written only with the public API (``setup``, ``Connection.send``,
``hub.broadcast``) and the default :class:`bullet_py.Options`. Messages:

- ``push:K``: queue K copies of the payload for this session (``conn.send``);
  they go out on whatever transport the session uses (frames, events, polls);
- ``bcast:X``: ``hub.broadcast(X)`` to every session;
- anything else is echoed, like ``examples/echo.py``.

Options: the defaults, except that the ``POST`` rate limits are off
(``post_rate_per_address`` and ``post_rate_per_session``). Every benchmark
client comes from 127.0.0.1 and posts as fast as it is answered: with the
defaults, the 1,000 ``POST``/s allowed per address would cap every long-poll
and event-stream row (all 50 clients together) at 1,000 ``POST``/s.

    python bench/servers/bullet_bench.py --host 127.0.0.1 --port 8080
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from aiohttp import web

from bullet_py import Connection, Handler, Options, setup
from bullet_py.web.serve import run

PAYLOAD = "p" * 90 + "0123456789"


class Bench(Handler):
    async def on_message(self, conn: Connection, message: str) -> str | None:
        if message.startswith("push:"):
            for _ in range(int(message[5:])):
                conn.send(PAYLOAD)
            return None
        if message.startswith("bcast:"):
            await conn.hub.broadcast(message[6:])
            return None
        return message


def options() -> Options:
    """The defaults, with the rate limits off (where this version has them): every
    client of the benchmark comes from one address and sends as fast as it can."""
    fields = {f.name for f in dataclasses.fields(Options)}
    off = {
        "post_rate_per_address",
        "post_rate_per_session",
        "session_mint_rate_per_address",
        "session_mint_rate_per_cookie",
        "ws_message_rate",
        "ws_control_rate",
    } & fields
    return Options(**dict.fromkeys(off))


def make_app() -> web.Application:
    app = web.Application()
    setup(app, "/bullet", Bench, options=options())
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    run(make_app(), args.host, args.port)
