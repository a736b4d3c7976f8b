"""Shared start-up for the benchmark's server scripts (peers and the raw baseline).

Every server script prints ``listening on http://H:P`` once it accepts
connections and exits cleanly on SIGINT/SIGTERM, like the project's examples,
so the runner drives them all the same way. Nothing here changes how a server
behaves: it is the plain ``AppRunner`` + ``TCPSite`` start-up of aiohttp with
its default settings, on asyncio's loop unless ``--loop uvloop`` asks for uvloop
(the runner's ``plain-uv`` and ``aiohttp-uv`` systems).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

# The text every server pushes (push workload): 100 ASCII characters, about the
# size of a small BERT ``{sync, ok, Props}`` message as the page receives it.
PAYLOAD = "p" * 90 + "0123456789"


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop (default asyncio's, as aiohttp's own web.run_app)",
    )
    return parser.parse_args()


async def _serve(app: web.Application, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, handle_signals=False)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, shutdown_timeout=2.0)
        await site.start()
        print(f"listening on http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def run(app: web.Application, host: str, port: int, loop: str = "asyncio") -> None:
    factory = asyncio.new_event_loop
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(app, host, port))
