"""Several workers of the Backbone example behind one Redis (docs/cluster.md).

    python examples/cluster.py --workers 2 --host 127.0.0.1 --port 8080 \\
        --redis redis://127.0.0.1:6379/0

Starts N worker processes on ports P..P+N-1, all sharing the Redis at URL
(pushes, polling sessions and the character's state). Each worker prints
``listening on http://H:PORT`` once ready; SIGINT or SIGTERM stops them all
gracefully. Put any load balancer in front, sticky or not: a page may poll
one worker and post to another, and an update made through any worker
reaches every page on every worker.

``--app MODULE:FUNCTION`` runs another app instead: ``FUNCTION(broker=...)``
must return an ``aiohttp.web.Application`` whose endpoint uses that broker.
A worker that dies is reported and not restarted (that is the job of a
process manager); the others keep serving. Each worker serves its own
``/metrics`` on its own port (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

SCRIPT = Path(__file__).resolve()
HERE = SCRIPT.parent


# --- one worker ---------------------------------------------------------------


def backbone_app(broker: Any) -> web.Application:
    """The Backbone example with its character kept in Redis, shared by every worker."""
    sys.path.insert(0, str(HERE / "backbone"))
    from app import redis_app  # examples/backbone/app.py

    app: web.Application = redis_app(broker)
    return app


def load_factory(spec: str) -> Callable[..., web.Application]:
    """``backbone`` or ``MODULE:FUNCTION``."""
    if spec == "backbone":
        return backbone_app
    module, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"--app wants MODULE:FUNCTION, got {spec!r}")
    factory: Callable[..., web.Application] = getattr(importlib.import_module(module), name)
    return factory


def die_with_parent(parent: int) -> None:
    """Linux: end this worker if the supervisor dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:  # it died before prctl took effect
        raise SystemExit(1)


def serve_worker(args: argparse.Namespace) -> None:
    from bullet_py.backends.redis import RedisBackend
    from bullet_py.web.serve import run

    die_with_parent(args.parent)
    broker = RedisBackend(args.redis, prefix=args.prefix, worker_ttl=args.worker_ttl)
    app = load_factory(args.app)(broker=broker)
    run(app, args.host, args.port)


# --- the supervisor -----------------------------------------------------------


async def supervise(args: argparse.Namespace) -> int:
    """Start the workers, echo their ``listening on`` lines, stop them on a signal."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    workers: dict[int, asyncio.subprocess.Process] = {}
    watchers: list[asyncio.Task[None]] = []
    failed = asyncio.Event()
    for i in range(args.workers):
        port = args.port + i
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--serve",
            "--parent",
            str(os.getpid()),
            "--host",
            args.host,
            "--port",
            str(port),
            "--redis",
            args.redis,
            "--prefix",
            args.prefix,
            "--worker-ttl",
            str(args.worker_ttl),
            "--app",
            args.app,
            "--log-level",
            args.log_level,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # the workers' logs go to our stderr as they are
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # a Ctrl-C reaches the supervisor, which stops them
        )
        workers[port] = proc
        watchers.append(loop.create_task(_watch(port, proc, stop, failed)))
    waiting = [loop.create_task(stop.wait()), loop.create_task(failed.wait())]
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    for task in waiting:
        task.cancel()
    code = 1 if failed.is_set() and not stop.is_set() else 0
    for proc in workers.values():
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for port, proc in workers.items():
        try:
            async with asyncio.timeout(args.stop_timeout):
                status = await proc.wait()
        except TimeoutError:
            print(f"worker on port {port} did not stop: killed", file=sys.stderr, flush=True)
            proc.kill()
            status = await proc.wait()
        if status not in (0, -signal.SIGTERM, -signal.SIGKILL) and not failed.is_set():
            code = 1
    for task in watchers:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return code


async def _watch(
    port: int, proc: asyncio.subprocess.Process, stop: asyncio.Event, failed: asyncio.Event
) -> None:
    """Echo the worker's output; report its exit if nobody asked it to stop."""
    assert proc.stdout is not None
    ready = False
    while raw := await proc.stdout.readline():
        line = raw.decode(errors="replace").rstrip("\n")
        print(line, flush=True)  # the worker's "listening on http://H:PORT"
        ready = ready or line.startswith("listening on ")
    status = await proc.wait()
    if not stop.is_set():
        print(f"worker on port {port} exited with status {status}", file=sys.stderr, flush=True)
        if not ready:
            failed.set()  # never came up: the whole cluster fails to start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="how many worker processes")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port of the first worker")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--prefix", default="bullet", help="Redis key prefix")
    parser.add_argument("--worker-ttl", type=float, default=15.0, help="dead after this silence")
    parser.add_argument("--app", default="backbone", help="backbone, or MODULE:FUNCTION")
    parser.add_argument("--stop-timeout", type=float, default=15.0, help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="WARNING", help="logging level")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from _args import configure_logging  # examples/_args.py: BULLET_LOG_JSON=1 for JSON lines

    configure_logging(args.log_level)
    if args.serve:
        serve_worker(args)
        return
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    sys.exit(asyncio.run(supervise(args)))


if __name__ == "__main__":
    main()
