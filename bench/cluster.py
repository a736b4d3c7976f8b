"""Push latency and throughput across workers: Redis with 1 and 2 workers vs in-memory.

    python bench/cluster.py             # about a minute
    python bench/cluster.py --quick     # a few seconds, small counts

Starts its own ``redis-server`` (a free port of 127.0.0.1, no persistence)
and its own server processes; this process runs the WebSocket clients and,
for some rows, the "job" that pushes through Redis without running a server.
Each row broadcasts numbered messages to every client:

- latency: ``--latency-messages`` pushes, one every ``--gap`` seconds (no
  queueing), timed from the push to each client's receipt (one clock: the
  clients and the pusher share this process), p50 and p99 over every receipt;
- throughput: ``--throughput-messages`` pushes as fast as the pusher goes,
  timed from the first push to the last receipt; deliveries/s counts one per
  client per message.

The first row is the in-memory default in one process (the push made inside
it); the others use ``RedisBackend``. Figures are printed, never asserted:
they depend on the machine (all processes share its cores, unpinned).
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
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from bullet_py import Broker, Connection, Handler, Hub, Options, setup  # noqa: E402
from bullet_py.registry import Registry  # noqa: E402

TIMEOUT = 60.0


# --- the server ------------------------------------------------------------------


class Bench(Handler):
    """``bcast:X`` broadcasts X to every session; ``send:X`` pushes X to this session
    (``conn.send``: a polling session's next poll gets it); anything else is echoed."""

    async def on_message(self, conn: Connection, message: str) -> str | None:
        if message.startswith("bcast:"):
            await conn.hub.broadcast(message[6:])
            return None
        if message.startswith("send:"):
            conn.send(message[5:])
            return None
        return message


def make_app(*, broker: Broker | None = None) -> web.Application:
    app = web.Application()
    # Every client comes from 127.0.0.1 and sends as fast as it is answered: rate limits off.
    options = Options(
        outbox_max_messages=1_000_000,
        post_rate_per_session=None,
        ws_message_rate=None,
        session_mint_rate_per_address=None,
        session_mint_rate_per_cookie=None,
    )
    setup(app, "/bullet", Bench, options=options, broker=broker)
    return app


def serve(port: int, redis_url: str | None, prefix: str) -> None:
    from bullet_py.web.serve import run

    broker: Broker | None = None
    if redis_url:
        from bullet_py.backends.redis import RedisBackend

        broker = RedisBackend(redis_url, prefix=prefix)
    profile = os.environ.get("BULLET_BENCH_PROFILE")  # bench/redis_cost.py --profile
    if not profile:
        run(make_app(broker=broker), "127.0.0.1", port)
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run(make_app(broker=broker), "127.0.0.1", port)
    finally:
        profiler.disable()
        profiler.dump_stats(f"{profile}-{port}.prof")


# --- processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(args: list[str], ready: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{args[0]} exited before it was ready")
            if ready in line.decode(errors="replace"):
                break
    _drains.add(asyncio.ensure_future(_drain(proc)))  # never let its pipe fill up
    return proc


_drains: set[asyncio.Future[None]] = set()


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
async def redis_server() -> AsyncIterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (scripts/setup.sh installs it)")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", workdir, "--logfile", ""]
        proc = await _start(args, "Ready to accept connections")
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            await _stop([proc])


@contextlib.asynccontextmanager
async def servers(count: int, redis_url: str | None, prefix: str) -> AsyncIterator[list[str]]:
    """``count`` server processes (the memory backend when ``redis_url`` is None)."""
    procs: list[asyncio.subprocess.Process] = []
    urls = []
    try:
        for _ in range(count):
            port = free_port()
            args = [sys.executable, __file__, "--serve", str(port), "--prefix", prefix]
            if redis_url:
                args += ["--redis", redis_url]
            procs.append(await _start(args, "listening on"))
            urls.append(f"http://127.0.0.1:{port}/bullet")
        yield urls
    finally:
        await _stop(procs)


# --- clients and measures ---------------------------------------------------------------


@dataclass
class Client:
    """A WebSocket page that notes when each numbered message arrived."""

    ws: aiohttp.ClientWebSocketResponse
    worker: int
    times: dict[int, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expect: int = 0

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            self.times[int(msg.data)] = time.perf_counter()
            if len(self.times) >= self.expect:
                self.done.set()


@dataclass
class Row:
    setup: str
    pushed_in: str
    clients: int
    p50_ms: float
    p99_ms: float
    per_second: float
    deliveries_per_second: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Pusher:
    """Broadcasts a number: through a WebSocket command, or as a job through Redis."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse | None, hub: Hub | None) -> None:
        self.ws = ws
        self.hub = hub

    async def push(self, seq: int) -> None:
        if self.ws is not None:
            await self.ws.send_str(f"bcast:{seq}")
        else:
            assert self.hub is not None
            await self.hub.broadcast(str(seq))


async def measure(
    label: str,
    pushed_in: str,
    urls: list[str],
    *,
    clients: int,
    pusher_worker: int | None,
    job: tuple[str, str] | None,
    measured_workers: set[int] | None,
    args: argparse.Namespace,
) -> Row:
    """One row: ``clients`` pages over ``urls``; the pusher is a page or a job."""
    async with aiohttp.ClientSession() as http:
        pages = [
            Client(await http.ws_connect(urls[i % len(urls)]), i % len(urls))
            for i in range(clients)
        ]
        hub: Hub | None = None
        pusher_ws = None
        if job is not None:
            from bullet_py.backends.redis import RedisBackend

            hub = Hub(Registry(Options()), RedisBackend(job[0], prefix=job[1], write_only=True))
            await hub.start()
        else:
            assert pusher_worker is not None
            pusher_ws = await http.ws_connect(urls[pusher_worker])
        pusher = Pusher(pusher_ws, hub)
        for page in pages:  # an echo: the page's session is open on its worker
            await page.ws.send_str("ready")
            assert await page.ws.receive_str(timeout=TIMEOUT) == "ready"
        readers = [asyncio.ensure_future(p.read()) for p in pages]
        measured = [p for p in pages if measured_workers is None or p.worker in measured_workers]
        try:
            warm = argparse.Namespace(**{**vars(args), "latency_messages": 50})
            await _latency(pusher, pages, measured, warm)  # warm-up, not counted
            latencies = await _latency(pusher, pages, measured, args)
            rate, deliveries = await _throughput(pusher, pages, args)
        finally:
            for reader in readers:
                reader.cancel()
            for page in pages:
                await page.ws.close()
            if pusher_ws is not None:
                await pusher_ws.close()
            if hub is not None:
                await hub.close()
    return Row(
        label,
        pushed_in,
        len(measured),
        percentile(latencies, 0.50) * 1000,
        percentile(latencies, 0.99) * 1000,
        rate,
        deliveries,
    )


async def _latency(
    pusher: Pusher, pages: list[Client], measured: list[Client], args: argparse.Namespace
) -> list[float]:
    count = args.latency_messages
    sent: dict[int, float] = {}
    for page in pages:
        page.times.clear()
        page.done.clear()
        page.expect = count
    for seq in range(count):
        sent[seq] = time.perf_counter()
        await pusher.push(seq)
        await asyncio.sleep(args.gap)
    async with asyncio.timeout(TIMEOUT):
        for page in pages:
            await page.done.wait()
    return [page.times[seq] - sent[seq] for page in measured for seq in range(count)]


async def _throughput(
    pusher: Pusher, pages: list[Client], args: argparse.Namespace
) -> tuple[float, float]:
    count = args.throughput_messages
    base = 1_000_000
    for page in pages:
        page.times.clear()
        page.done.clear()
        page.expect = count
    start = time.perf_counter()
    for seq in range(base, base + count):
        await pusher.push(seq)
    async with asyncio.timeout(TIMEOUT):
        for page in pages:
            await page.done.wait()
    elapsed = max(max(p.times.values()) for p in pages) - start
    return count / elapsed, count * len(pages) / elapsed


async def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    n = args.clients
    common: dict[str, Any] = {"clients": n, "args": args}
    async with servers(1, None, "memory") as urls:
        rows.append(
            await measure(
                "memory, 1 process",
                "the process",
                urls,
                pusher_worker=0,
                job=None,
                measured_workers=None,
                **common,
            )
        )
    async with redis_server() as redis_url:
        async with servers(1, redis_url, "b1") as urls:
            rows.append(
                await measure(
                    "redis, 1 worker",
                    "the worker",
                    urls,
                    pusher_worker=0,
                    job=None,
                    measured_workers=None,
                    **common,
                )
            )
            rows.append(
                await measure(
                    "redis, 1 worker",
                    "a job (no server)",
                    urls,
                    pusher_worker=None,
                    job=(redis_url, "b1"),
                    measured_workers=None,
                    **common,
                )
            )
        async with servers(2, redis_url, "b2") as urls:
            rows.append(
                await measure(
                    "redis, 2 workers",
                    "a job (no server)",
                    urls,
                    pusher_worker=None,
                    job=(redis_url, "b2"),
                    measured_workers=None,
                    **common,
                )
            )
            rows.append(
                await measure(
                    "redis, 2 workers",
                    "worker 0; pages on worker 1",
                    urls,
                    pusher_worker=0,
                    job=None,
                    measured_workers={1},
                    **common,
                )
            )
    return rows


def report(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"Push to {args.clients} WebSocket pages: latency over {args.latency_messages} "
        f"pushes {args.gap * 1000:.0f} ms apart; throughput over "
        f"{args.throughput_messages} pushes back to back.",
        "",
        "| setup | push made in | pages timed | p50 ms | p99 ms | pushes/s | deliveries/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.setup} | {r.pushed_in} | {r.clients} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.per_second:,.0f} | {r.deliveries_per_second:,.0f} |"
        )
    lines += [
        "",
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}; "
        "servers, redis-server and clients share the machine, unpinned.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--latency-messages", type=int, default=500)
    parser.add_argument("--throughput-messages", type=int, default=3000)
    parser.add_argument("--gap", type=float, default=0.004, help="seconds between timed pushes")
    parser.add_argument("--quick", action="store_true", help="small counts, a few seconds")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.redis, args.prefix)
        return
    if args.quick:
        args.clients, args.latency_messages, args.throughput_messages = 6, 60, 300
    print(report(asyncio.run(run(args)), args))


if __name__ == "__main__":
    main()
