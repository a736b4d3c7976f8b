"""What one long-polling ``POST`` costs the server: bullet_py against a bare aiohttp echo.

Each of N clients is one keep-alive HTTP/1.1 connection written on a bare
``asyncio.Protocol`` (no HTTP library: the client must cost far less than the
server). It fetches a session cookie with one ``GET``, then sends ``POST``s of
a 100-character message, one in flight, each carrying the cookie and the
original client's headers, and reads the echo. The server runs in its own
process, pinned to CPU 0 (the clients to CPU 1 when there are two); its CPU
time comes from ``/proc/PID/task/*/schedstat``.

Servers (``--systems``):

- ``aiohttp``: ``web.Response(text=await request.text())`` for a ``POST``,
  204 for a ``GET``; nothing else (the floor);
- ``bullet``: ``examples/echo.py``'s handler at ``/bullet`` with the ``POST``
  rate limits off (as ``bench/servers/bullet_bench.py``: every client here
  comes from 127.0.0.1);
- ``erlang``: the original Erlang Bullet (``bench/peers/erlang``, once built;
  ``ERLANG_BULLET_DIR`` as for ``bench/run.py``), which has no sessions: its
  clients send no cookie. Not with ``--profile`` or ``--callgrind``.

``--profile`` runs each server under cProfile and prints where its time went,
grouped by package, and the functions that cost most.

    PYTHONPATH=$PWD/src python bench/post_profile.py --clients 50 --duration 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MESSAGE = "m" * 90 + "0123456789"
ERLANG_START = Path(__file__).resolve().parent / "peers" / "erlang" / "start.sh"
ENV = {"MALLOC_MMAP_THRESHOLD_": "524288", "MALLOC_TRIM_THRESHOLD_": "1048576"}


# --- the servers --------------------------------------------------------------


def _bare_app() -> object:
    from aiohttp import web

    async def post(request: web.Request) -> web.Response:
        return web.Response(text=await request.text())

    async def get(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/bullet", post)
    app.router.add_get("/bullet", get)
    return app


def _bullet_app() -> object:
    from aiohttp import web

    from bullet_py import Connection, Handler, Options, setup

    class Echo(Handler):  # examples/echo.py's handler
        async def on_message(self, conn: Connection, message: str) -> str:
            return message

    app = web.Application()
    options = Options(post_rate_per_address=None, post_rate_per_session=None)
    setup(app, "/bullet", Echo, options=options)
    return app


def serve(system: str, port: int, profile_to: str | None) -> None:
    from aiohttp import web

    app = _bare_app() if system == "aiohttp" else _bullet_app()
    profiler = cProfile.Profile() if profile_to else None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)  # type: ignore[arg-type]
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        if profiler is not None:
            profiler.enable()
        await stop.wait()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)
        await runner.cleanup()

    from bullet_py.web.serve import loop_factory  # $BULLET_EVENT_LOOP, from --server-loop

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main())


# --- the lean client ------------------------------------------------------------


class Budget:
    """What every client of one run shares: answers counted, requests still allowed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.answered = 0
        self.left = float("inf")
        self.outstanding = 0
        self.failed: asyncio.Future[None] = loop.create_future()
        self.drained: asyncio.Future[None] | None = None
        self.idle: list[Client] = []
        self.transports: list[asyncio.BaseTransport] = []  # every connection, to close at the end

    def allow(self, n: float, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Allow ``n`` more requests; the future is done once all of them are answered."""
        self.left = n
        self.drained = loop.create_future()
        idle, self.idle = self.idle, []
        for client in idle:
            client.send()
        return self.drained


class Client(asyncio.Protocol):
    """One keep-alive connection: a POST, wait for the whole answer, the next POST.

    A server that closes a connection after an answer saying ``Connection:
    close`` (cowboy 1.0 does after 100 requests) gets a new one, as a
    browser's XHR would open.
    """

    def __init__(self, request: bytes, budget: Budget, port: int) -> None:
        self.request = request
        self.budget = budget
        self.port = port
        self.buffer = b""
        self.closing = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        budget = self.budget
        if budget.left <= 0:
            budget.idle.append(self)
            if budget.outstanding == 0 and budget.drained and not budget.drained.done():
                budget.drained.set_result(None)
            return
        budget.left -= 1
        budget.outstanding += 1
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                elif line.lower() == b"connection: close":
                    self.closing = True
            if len(buffer) < end + 4 + length:
                break
            if head[9:12] not in (b"200", b"204"):
                self._fail(RuntimeError(head.decode("latin-1")))
                return
            buffer = buffer[end + 4 + length :]
            self.budget.answered += 1
            self.budget.outstanding -= 1
            if self.closing:
                return  # the next request goes on a new connection
            self.send()
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing or self.budget.failed.done():
            self._fail(ConnectionError(f"closed: {exc}"))
            return
        task = asyncio.get_running_loop().create_task(self._reopen())
        _REOPENING.add(task)
        task.add_done_callback(_REOPENING.discard)

    async def _reopen(self) -> None:
        try:
            transport, _ = await asyncio.get_running_loop().create_connection(
                lambda: Client(self.request, self.budget, self.port), "127.0.0.1", self.port
            )
            self.budget.transports.append(transport)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        if not self.budget.failed.done():
            self.budget.failed.set_exception(exc)


_REOPENING: set[asyncio.Task[None]] = set()


def _request(method: str, cookie: str | None, body: bytes = b"") -> bytes:
    lines = [
        f"{method} /bullet HTTP/1.1",
        "Host: 127.0.0.1",
        "X-Socket-Transport: xhrPolling",
        "X-Requested-With: XMLHttpRequest",
        "Accept-Encoding: identity",
    ]
    if method == "POST":
        lines.append("Content-Type: application/x-www-form-urlencoded; charset=UTF-8")
        lines.append(f"Content-Length: {len(body)}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _cookie(port: int) -> str | None:
    """One GET, as the original client's first poll: the session cookie it is given."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_request("GET", None))
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("set-cookie:"):
            return line.split(":", 1)[1].split(";", 1)[0].strip()
    return None


def _cpu_ns(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


async def _connect(port: int, clients: int, budget: Budget, sessions: bool = True) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(clients):
        cookie = await _cookie(port) if sessions else None
        request = _request("POST", cookie, MESSAGE.encode())
        transport, _ = await loop.create_connection(
            lambda request=request: Client(request, budget, port), "127.0.0.1", port
        )
        budget.transports.append(transport)


async def _until(budget: Budget, future: asyncio.Future[None], timeout: float | None) -> None:
    """Wait for ``future`` (or ``timeout``); a refusal or a dropped connection raises."""
    done, _ = await asyncio.wait(
        (future, budget.failed), timeout=timeout, return_when="FIRST_COMPLETED"
    )
    if budget.failed in done:
        budget.failed.result()


async def drive(port: int, pid: int, args: argparse.Namespace) -> dict[str, float]:
    """Requests/s and server CPU per request over a window after a warm-up."""
    loop = asyncio.get_running_loop()
    budget = Budget(loop)
    never = loop.create_future()
    await _connect(port, args.clients, budget, args.sessions)
    await _until(budget, never, args.warmup)
    start_n, start_cpu, start_t = budget.answered, _cpu_ns(pid), time.perf_counter()
    await _until(budget, never, args.duration)
    n, cpu = budget.answered - start_n, _cpu_ns(pid) - start_cpu
    elapsed = time.perf_counter() - start_t
    budget.failed.cancel()  # the connections' ends from here on are ours
    for transport in budget.transports:
        transport.close()
    return {
        "rate": n / elapsed,
        "us_per_request": cpu / 1000 / max(n, 1),
        "cpu": cpu / 1e9 / elapsed,
    }


async def count_instructions(port: int, pid: int, args: argparse.Namespace, out: str) -> float:
    """Instructions per request under callgrind: zeroed after a warm-up, dumped after N."""
    loop = asyncio.get_running_loop()
    budget = Budget(loop)
    budget.left = 0
    await _connect(port, args.clients, budget)
    await _until(budget, budget.allow(args.clients * 20, loop), None)
    await _callgrind_control("-z", pid)
    await _until(budget, budget.allow(args.requests, loop), None)
    await _callgrind_control("-d", pid)
    budget.failed.cancel()
    for transport in budget.transports:
        transport.close()
    total = 0
    for path in Path(out).parent.glob(Path(out).name + "*"):
        for line in path.read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                total = max(total, int(line.split()[1]))
        path.unlink()
    return total / args.requests


async def _callgrind_control(flag: str, pid: int) -> None:
    process = await asyncio.create_subprocess_exec(
        "callgrind_control", flag, str(pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    await process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() else []


def measure(
    system: str,
    args: argparse.Namespace,
    profile_to: str | None = None,
    callgrind: str | None = None,
) -> dict[str, float]:
    port = _free_port()
    cmd = [*_pinned(0), sys.executable, __file__, "--serve", system, "--port", str(port)]
    args.sessions = system != "erlang"  # the original Bullet has none: no cookie to fetch
    if system == "erlang":
        cmd = [*_pinned(0), str(ERLANG_START), "--host", "127.0.0.1", "--port", str(port)]
    if callgrind:
        cmd[len(_pinned(0)) : len(_pinned(0))] = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={callgrind}",
            "-q",
        ]
    if profile_to:
        cmd += ["--profile-to", profile_to]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, env={**os.environ, **ENV})
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if line.strip() != b"ready" and not line.startswith(b"listening on "):
            raise RuntimeError(f"{system} did not start")
        # taskset and valgrind exec the server: its pid is the server's
        if callgrind:
            per = asyncio.run(count_instructions(port, server.pid, args, callgrind))
            return {"instructions": per}
        return asyncio.run(drive(port, server.pid, args))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


# bullet_py's steps of a POST, each shown with what it calls.
CALLEES = (
    r"endpoint.py.*\((handle|resolve_peer|_host_ok)\)|polling.py.*\((serve_send|_send_reply)\)"
    r"|exchange.py.*\(__init__\)|connection.py.*\(handle_message\)"
)


def _group(filename: str) -> str:
    for name in ("bullet_py", "aiohttp", "multidict", "yarl", "asyncio"):
        if f"/{name}/" in filename:
            return name
    return "builtins" if filename == "~" else "other"


def report_profile(path: str, top: int) -> str:
    stats = pstats.Stats(path)
    groups: dict[str, float] = {}
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        groups[_group(filename)] = groups.get(_group(filename), 0.0) + tottime
        total += tottime
    lines = [
        "self time by package: "
        + ", ".join(
            f"{name} {100 * t / total:.1f}%"
            for name, t in sorted(groups.items(), key=lambda x: -x[1])
        )
    ]
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    stats.print_callees(CALLEES)
    lines.append(out.getvalue().split("\n\n", 2)[-1])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--systems", default="aiohttp,bullet")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--profile", action="store_true", help="also run each server under cProfile"
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--callgrind", action="store_true", help="count instructions per request instead"
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests counted by --callgrind"
    )
    parser.add_argument(
        "--server-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop every server runs on (default asyncio's)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.serve:
        os.environ["BULLET_EVENT_LOOP"] = args.server_loop  # read by the servers' children
    if args.serve:
        serve(args.serve, args.port, args.profile_to)
        return
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    systems = args.systems.split(",")
    if args.callgrind:
        print(f"{args.clients} clients, user-space instructions per request over {args.requests}")
        for system in (s for s in systems if s != "erlang"):
            with tempfile.TemporaryDirectory() as tmp:
                per = measure(system, args, callgrind=str(Path(tmp) / "callgrind.out"))
            print(f"{system:<10}{per['instructions']:>14,.0f}")
        return
    results: dict[str, list[dict[str, float]]] = {s: [] for s in systems}
    for _ in range(args.repeats):
        for system in systems:
            results[system].append(measure(system, args, None))
    print(f"{args.clients} clients, {args.duration} s windows, median of {args.repeats}")
    print(f"{'system':<10}{'req/s':>10}{'server µs/req':>16}{'server CPU':>12}")
    for system, runs in results.items():

        def median(key: str, runs: list[dict[str, float]] = runs) -> float:
            return sorted(r[key] for r in runs)[len(runs) // 2]

        rate, cost, cpu = median("rate"), median("us_per_request"), median("cpu")
        print(f"{system:<10}{rate:>10,.0f}{cost:>16.1f}{cpu:>12.2f}")
    if args.profile:
        for system in (s for s in systems if s != "erlang"):
            with tempfile.TemporaryDirectory() as tmp:
                path = str(Path(tmp) / "profile")
                measure(system, args, path)
                print(f"\n--- {system}: cProfile (its overhead inflates every figure) ---")
                print(report_profile(path, args.top))


if __name__ == "__main__":
    main()
