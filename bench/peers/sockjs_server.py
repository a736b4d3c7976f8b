"""sockjs (aio-libs) on aiohttp, as small as the benchmark allows.

Endpoint prefix ``/sockjs``: its raw WebSocket at ``/sockjs/websocket`` (plain
text frames) and its xhr-polling at ``/sockjs/<server>/<session>/xhr`` and
``.../xhr_send``. Messages: ``push:K`` → K messages of the payload to the
sender; ``bcast:X`` → ``manager.broadcast(X)``; anything else is echoed.

Settings: ``sockjs.add_endpoint(app, handler, name="bench", prefix="/sockjs")``,
everything else at its default (heartbeat 25 s, disconnect delay 5 s, cookie
needed, all transports on).

    python bench/peers/sockjs_server.py --host 127.0.0.1 --port 8080
"""

from __future__ import annotations

import sockjs
from _serve import PAYLOAD, parse, run
from aiohttp import web


async def handler(manager: sockjs.SessionManager, session: sockjs.Session, msg: object) -> None:
    if getattr(msg, "type", None) is not sockjs.MsgType.MESSAGE:
        return
    data: str = msg.data  # type: ignore[attr-defined]
    if data.startswith("push:"):
        for _ in range(int(data[5:])):
            session.send(PAYLOAD)
    elif data.startswith("bcast:"):
        manager.broadcast(data[6:])
    else:
        session.send(data)


def make_app() -> web.Application:
    app = web.Application()
    sockjs.add_endpoint(app, handler, name="bench", prefix="/sockjs")
    return app


if __name__ == "__main__":
    args = parse(__doc__ or "")
    run(make_app(), args.host, args.port, args.loop)
