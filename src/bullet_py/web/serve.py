"""Run an app until SIGINT or SIGTERM, then stop gracefully (examples, small deployments)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import Callable

from aiohttp import web

#: Seconds a connection may sit without a complete request (aiohttp's own
#: default is an hour): it also cuts clients that dribble their headers
#: (slowloris, docs/robustness.md item 48). The original client's next poll follows
#: an answer within 100 ms, so this never closes a live one.
KEEPALIVE_TIMEOUT = 15.0


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 5.0,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    freeze_startup: bool = False,
) -> None:
    """Serve ``app`` on ``host:port``; print ``listening on http://H:P`` once ready.

    On SIGINT or SIGTERM: stop accepting, answer parked polls, close
    WebSockets with 1001, end event streams, run close callbacks, return.
    A connection with no complete request for ``keepalive_timeout`` seconds
    (idle, or still sending its headers) is closed. ``freeze_startup``: see
    :func:`freeze_startup_objects` (for a process that serves only this app).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=keepalive_timeout,
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        if freeze_startup:
            freeze_startup_objects()
        print(f"listening on http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()  # a second signal meanwhile changes nothing
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 5.0,
    keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    event_loop: str | None = None,
    freeze_startup: bool = True,
) -> None:
    """Blocking form of :func:`serve`, on the loop :func:`loop_factory` picks.

    It owns the process, so by default it moves what start-up made out of the
    garbage collector's way (``freeze_startup``, see :func:`freeze_startup_objects`).
    """
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        runner.run(
            serve(
                app,
                host,
                port,
                shutdown_timeout=shutdown_timeout,
                keepalive_timeout=keepalive_timeout,
                freeze_startup=freeze_startup,
            )
        )


def freeze_startup_objects() -> None:
    """Leave what exists now (modules, the app, backend clients) out of every later collection.

    Python's cyclic collector walks every tracked object in a full collection.
    A server whose messages outlive a collection or two (a Redis write
    waiting for its round trip) promotes some of them each time and so runs
    full collections often, each walking the imported modules and the app
    again: with the Redis backend, about 8 % of a broadcast's instructions,
    a third of what Redis added (docs/benchmarks.md). After :func:`gc.freeze` they are
    walked no more; the start-up garbage is collected first, so nothing
    unreachable is kept. Objects made later are collected as before.
    """
    gc.collect()
    gc.freeze()


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop to serve on: uvloop when installed, else asyncio's own.

    uvloop's loop and transports are C: a WebSocket echo costs about 0.7x the
    instructions on it, a long-poll ``POST`` about 0.85x (docs/benchmarks.md).
    ``choice`` (else ``$BULLET_EVENT_LOOP``) is ``auto``, ``uvloop`` (an error
    when it is not installed) or ``asyncio``.
    """
    choice = choice or os.environ.get("BULLET_EVENT_LOOP") or "auto"
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"event loop {choice!r}: expected auto, uvloop or asyncio")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop
