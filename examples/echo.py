"""Echo: every message comes back unchanged, on every transport.

    python examples/echo.py --host 127.0.0.1 --port 8080

Endpoint ``/bullet``; the project's browser files under ``/js/``.
"""

from __future__ import annotations

from _args import add_metrics, parse
from aiohttp import web

from bullet_py import Connection, Handler, add_static_js, setup
from bullet_py.web.serve import run


class Echo(Handler):
    async def on_message(self, conn: Connection, message: str) -> str:
        return message


def make_app() -> web.Application:
    app = web.Application()
    setup(app, "/bullet", Echo)
    add_static_js(app)
    add_metrics(app)
    return app


if __name__ == "__main__":
    args = parse(__doc__ or "")
    run(make_app(), args.host, args.port)
