"""Run an app until SIGINT or SIGTERM, then stop gracefully (examples, small deployments)."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web


async def serve(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5.0
) -> None:
    """Serve ``app`` on ``host:port``; print ``listening on http://H:P`` once ready.

    On SIGINT or SIGTERM: stop accepting, answer parked polls, close
    WebSockets with 1001, end event streams, run close callbacks, return.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, handle_signals=False)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, shutdown_timeout=shutdown_timeout)
        await site.start()
        print(f"listening on http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()  # a second signal meanwhile changes nothing
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5.0) -> None:
    """Blocking form of :func:`serve`."""
    asyncio.run(serve(app, host, port, shutdown_timeout=shutdown_timeout))
