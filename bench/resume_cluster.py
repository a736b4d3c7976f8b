"""What a parked session costs with several workers (Redis): a view vs a stream at home.

    python bench/resume_cluster.py            # about half a minute
    python bench/resume_cluster.py --quick    # a few seconds, small counts

Starts its own ``redis-server`` (a free port of 127.0.0.1, no persistence) and
two worker processes; this process runs the WebSocket pages and the "job"
that pushes through Redis (no server). Each row pushes ``--messages``
numbered messages to one session, as fast as the job goes, timed from the
first push to the last receipt:

- ``attached``: the page's WebSocket on the session's home worker (the queue in
  that process: the baseline);
- ``view, home``: the page dropped (a reset) and came back to the same worker:
  the session is parked, the page is a view of its Redis queue;
- ``view, other worker``: the page came back to the other worker.

It also times a resume: from the reconnecting handshake on the other worker
to the first message queued while away (the other worker waits for the home
to park the session, then serves it). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bullet_py import Connection, Handler, Hub, Options, Transport, setup  # noqa: E402
from bullet_py.registry import Registry  # noqa: E402

TIMEOUT = 60.0


class Page(Handler):
    async def on_open(self, conn: Connection) -> None:
        if conn.transport is Transport.WEBSOCKET:
            conn.send(f"sid:{conn.session_id}")


def serve(port: int, redis_url: str, prefix: str) -> None:
    from bullet_py.backends.redis import RedisBackend
    from bullet_py.web.serve import run

    app = web.Application()
    options = Options(outbox_max_messages=1_000_000, session_idle_timeout=120)
    setup(app, "/bullet", Page, options=options, broker=RedisBackend(redis_url, prefix=prefix))
    run(app, "127.0.0.1", port)


# --- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_drains: set[asyncio.Future[None]] = set()


async def _start(args: list[str], ready: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while ready not in (await proc.stdout.readline()).decode(errors="replace"):
            if proc.stdout.at_eof():
                raise RuntimeError(f"{args[0]} exited before it was ready")
    _drains.add(asyncio.ensure_future(_drain(proc)))
    return proc


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    while await proc.stdout.readline():
        pass


async def _stop(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def cluster(workers: int) -> AsyncIterator[tuple[str, str, list[str]]]:
    """A redis-server and ``workers`` worker processes: (redis url, prefix, page urls)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (scripts/setup.sh installs it)")
    procs: list[asyncio.subprocess.Process] = []
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", workdir, "--logfile", ""]
        procs.append(await _start(args, "Ready to accept connections"))
        redis_url = f"redis://127.0.0.1:{port}/0"
        prefix = f"resume{os.getpid()}"
        urls = []
        try:
            for _ in range(workers):
                port = free_port()
                args = [sys.executable, __file__, "--serve", str(port)]
                args += ["--redis", redis_url, "--prefix", prefix]
                procs.append(await _start(args, "listening on"))
                urls.append(f"http://127.0.0.1:{port}/bullet")
            yield redis_url, prefix, urls
        finally:
            await _stop(procs[1:])
            await _stop(procs[:1])


# --- a page ------------------------------------------------------------------------------


class Reader:
    """One WebSocket: the arrival time of each numbered message."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.times: dict[int, float] = {}
        self.seen = 0  # messages received, as the project's client counts them
        self.expect = 0
        self.done = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.seen += 1
            if msg.type is aiohttp.WSMsgType.TEXT and msg.data.isdigit():
                self.times[int(msg.data)] = time.perf_counter()
                if len(self.times) >= self.expect:
                    self.done.set()

    def drop(self) -> None:
        """A reset: no close frame (the session stays, detached then parked)."""
        connection = self.ws._response.connection  # aiohttp has no public way
        if connection is not None and connection.transport is not None:
            connection.transport.abort()


async def connect(
    http: aiohttp.ClientSession, url: str, sid: str = "", seen: int = 0
) -> tuple[Reader, str]:
    """A page of the project's client: it reports its count (a reset loses nothing)."""
    headers = {"Cookie": f"bullet_sid={sid}"} if sid else {}
    ws = await http.ws_connect(f"{url}?bullet_seen={seen}", headers=headers)
    if not sid:
        sid = (await ws.receive_str(timeout=TIMEOUT))[4:]
        seen = 1
    reader = Reader(ws)
    reader.seen = seen
    return reader, sid


async def rate(hub: Hub, reader: Reader, sid: str, count: int, first: int) -> float:
    """Messages a second: ``count`` pushes, from the first push to the last receipt."""
    reader.expect = len(reader.times) + count
    reader.done.clear()
    started = time.perf_counter()
    for n in range(first, first + count):
        await hub.send(sid, str(n))
    async with asyncio.timeout(TIMEOUT):
        await reader.done.wait()
    return count / (max(reader.times.values()) - started)


async def measure(messages: int, resumes: int) -> None:
    from bullet_py.backends.redis import RedisBackend

    async with (
        cluster(2) as (redis_url, prefix, urls),
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        hub = Hub(Registry(Options()), RedisBackend(redis_url, prefix=prefix, write_only=True))
        await hub.start()
        try:
            rows: list[tuple[str, float]] = []
            reader, sid = await connect(http, urls[0])
            rows.append(("attached (home)", await rate(hub, reader, sid, messages, 0)))
            reader.drop()
            reader, _ = await connect(http, urls[0], sid, reader.seen)
            rows.append(("view, home", await rate(hub, reader, sid, messages, messages)))
            reader.drop()
            reader, _ = await connect(http, urls[1], sid, reader.seen)
            rows.append(
                ("view, other worker", await rate(hub, reader, sid, messages, 2 * messages))
            )
            reader.drop()

            waits = []
            for n in range(resumes):
                page, fresh = await connect(http, urls[n % 2])
                page.drop()
                await hub.send(fresh, "0")  # queued while away
                page.expect = 1
                page.done.clear()
                started = time.perf_counter()
                page, _ = await connect(http, urls[(n + 1) % 2], fresh, page.seen)
                page.expect = 1
                async with asyncio.timeout(TIMEOUT):
                    await page.done.wait()
                waits.append((page.times[0] - started) * 1000)
                page.drop()
        finally:
            await hub.close()
    base = rows[0][1]
    print(f"One session, {messages} pushes from a job (no server) through Redis, 2 workers.\n")
    print("| the page | messages/s | vs attached |")
    print("|---|---:|---:|")
    for name, per_second in rows:
        print(f"| {name} | {per_second:,.0f} | {per_second / base:.2f}x |")
    waits.sort()
    print(
        f"\nResume on the other worker after a reset ({resumes} times): handshake to the "
        f"first queued message, p50 {statistics.median(waits):.1f} ms, "
        f"max {waits[-1]:.1f} ms"
    )
    print(f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--resumes", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="small counts")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.redis, args.prefix)
        return
    if args.quick:
        args.messages, args.resumes = 200, 5
    asyncio.run(measure(args.messages, args.resumes))


if __name__ == "__main__":
    main()
