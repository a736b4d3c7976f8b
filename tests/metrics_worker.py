"""One worker of the multiprocess metrics test: an echo endpoint, instrumented.

    PROMETHEUS_MULTIPROC_DIR=DIR python tests/metrics_worker.py PORT

Prints ``listening on http://127.0.0.1:PORT`` when ready; stops on SIGTERM.
"""

from __future__ import annotations

import sys

from aiohttp import web

from bullet_py import Connection, Handler, metrics, setup
from bullet_py.web.serve import run


class Echo(Handler):
    async def on_message(self, conn: Connection, message: str) -> str:
        return message


def main() -> None:
    app = web.Application()
    setup(app, "/bullet", Echo)
    metrics.add_metrics_route(app, refresh=0.05)
    run(app, "127.0.0.1", int(sys.argv[1]))


if __name__ == "__main__":
    main()
