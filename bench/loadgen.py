"""The load generator: the workloads, written once for every adapter.

Each workload takes a factory that makes one unconnected client (an adapter
of :mod:`adapters`) and a :class:`ServerProbe` that reads the server's CPU
time and RSS from ``/proc``, and returns a flat dict of figures.

- ``echo``: N clients, one message in flight each, for ``duration`` seconds
  after ``warmup`` → messages/s, p50/p99 round trip. ``echo_in_turn`` does the
  same for several servers at once, taking turns in short slices, so that
  their ratios do not depend on when each ran (``bench/run.py``'s echo rows).
- ``push``: each client asks for ``window`` messages (``push:K``) and asks
  again each time ``K`` have arrived, keeping ``windows`` requests
  outstanding → delivered messages/s (and, with one message in flight, the
  time from asking to delivery).
- ``broadcast``: N connections; one of them sends ``bcast:X`` and the clock
  stops when all N have X; repeated ``rounds`` times → median time.
- ``idle``: N connections (or parked polls) → server RSS growth per connection.

Every loop is bounded in count and time; every connection is closed on the way
out, whatever happened.

Standalone use, against a server you started yourself::

    python bench/loadgen.py --wire bullet-ws --url http://127.0.0.1:8080 echo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import adapters
import aiohttp

ECHO_TEXT = "e" * 90 + "0123456789"  # 100 characters, like the pushed payload

Factory = Callable[[aiohttp.ClientSession], adapters.Client]

# wire name → adapter factory (given the shared session and the base URL)
WIRES: dict[str, Callable[[aiohttp.ClientSession, str], adapters.Client]] = {
    "bullet-ws": adapters.BulletWS,
    "bullet-poll": adapters.BulletPoll,
    "bullet-poll-100ms": lambda http, base: adapters.BulletPoll(http, base, pause=0.1),
    "bullet-sse": adapters.BulletSSE,
    "original-ws": adapters.OriginalWS,
    "original-poll": adapters.OriginalPoll,
    "original-sse": adapters.OriginalSSE,
    "sio-ws": adapters.SioWS,
    "sio-poll": adapters.SioPoll,
    "sockjs-ws": adapters.SockjsWS,
    "sockjs-xhr": adapters.SockjsXHR,
}


class ServerProbe:
    """CPU time and RSS of the server process, read from /proc (Linux)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._tick = os.sysconf("SC_CLK_TCK")

    def cpu(self) -> float:
        """CPU seconds the server has used so far, all threads (0.0 if unknown).

        From ``/proc/PID/task/*/schedstat`` (nanoseconds on CPU), falling back
        to ``/proc/PID/stat`` (10 ms ticks).
        """
        if self.pid is None:
            return 0.0
        try:
            total = 0
            for task in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            return total / 1e9
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / self._tick

    def rss(self) -> int:
        """Resident set size in bytes (0 if unknown)."""
        if self.pid is None:
            return 0
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    async def settle(self, quiet: float = 0.5, budget: float = 10.0) -> None:
        """Wait until the server has used at most 4% of a CPU over the last ``quiet`` seconds."""
        step = 0.1
        history = [self.cpu()]
        deadline = time.monotonic() + budget
        span = max(2, round(quiet / step))
        while time.monotonic() < deadline:
            await asyncio.sleep(step)
            history.append(self.cpu())
            if len(history) > span and history[-1] - history[-1 - span] <= 0.04 * quiet:
                return


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Window:
    """Counts completions and keeps round trips only inside the measured window."""

    def __init__(self) -> None:
        self.count = 0
        self.recording = False
        self.samples: list[float] = []
        self.errors = 0
        self.error_text = ""

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        if not self.error_text:
            self.error_text = f"{type(exc).__name__}: {exc}"[:200]


def new_http() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, enable_cleanup_closed=False)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=adapters.NO_TIMEOUT,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


async def connect_all(
    make: Factory, http: aiohttp.ClientSession, n: int, *, concurrency: int = 50, budget: float
) -> list[adapters.Client]:
    """Open ``n`` clients, ``concurrency`` at a time; raise if any fails or time runs out."""
    clients: list[adapters.Client] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        client = make(http)
        clients.append(client)
        async with gate:
            await client.connect()

    try:
        async with asyncio.timeout(budget):
            await asyncio.gather(*(one() for _ in range(n)))
    except BaseException:
        await close_all(clients)
        raise
    return clients


async def close_all(clients: list[adapters.Client]) -> None:
    async def one(client: adapters.Client) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5)

    for start in range(0, len(clients), 200):
        await asyncio.gather(*(one(c) for c in clients[start : start + 200]))


async def _measure(
    loops: list[Awaitable[None]],
    window: Window,
    probe: ServerProbe,
    warmup: float,
    duration: float,
) -> dict[str, float]:
    """Run the client loops; count what completes in [warmup, warmup + duration]."""
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    try:
        await asyncio.sleep(warmup)
        start_count, start_cpu = window.count, probe.cpu()
        start_own = time.process_time()
        window.recording = True
        started = time.perf_counter()
        await asyncio.sleep(duration)
        elapsed = time.perf_counter() - started
        window.recording = False
        done = window.count - start_count
        server_cpu = probe.cpu() - start_cpu
        own_cpu = time.process_time() - start_own
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return _rates(done, elapsed, server_cpu, own_cpu)


def _rates(done: int, elapsed: float, server_cpu: float, own_cpu: float) -> dict[str, float]:
    """The figures of ``done`` messages in ``elapsed`` seconds of measuring."""
    return {
        "rate": done / elapsed,
        "messages": done,
        "server_cpu": server_cpu / elapsed,  # cores busy (1.0 = one core saturated)
        "client_cpu": own_cpu / elapsed,
        "server_us_per_msg": 1e6 * server_cpu / done if done else float("nan"),
    }


def _round_trips(window: Window) -> dict[str, Any]:
    """An echo's round-trip percentiles and errors, from its window."""
    return {
        "p50_ms": 1000 * percentile(window.samples, 0.50),
        "p99_ms": 1000 * percentile(window.samples, 0.99),
        "errors": window.errors,
        "error": window.error_text,
    }


async def _echo_loop(
    client: adapters.Client, window: Window, gate: asyncio.Event | None = None
) -> None:
    """Send, await the echo, check it, count it; forever (while ``gate`` is set, if given)."""
    try:
        while True:
            if gate is not None and not gate.is_set():
                await gate.wait()
            sent = time.perf_counter()
            await client.send(ECHO_TEXT)
            reply = await client.recv()
            if reply != ECHO_TEXT:
                raise ValueError(f"echo mismatch: {reply[:40]!r}")
            window.count += 1
            if window.recording:
                window.samples.append(time.perf_counter() - sent)
    except Exception as exc:
        window.failed(exc)


async def echo(
    make: Factory, probe: ServerProbe, *, n: int, warmup: float, duration: float
) -> dict[str, Any]:
    """N clients, each with one message in flight."""
    window = Window()
    async with new_http() as http:
        clients = await connect_all(make, http, n, budget=30)
        try:
            loops = [_echo_loop(c, window) for c in clients]
            figures = await _measure(loops, window, probe, warmup, duration)
        finally:
            await close_all(clients)
    return {**figures, **_round_trips(window)}


async def echo_in_turn(
    makes: dict[str, Factory],
    probes: dict[str, ServerProbe],
    *,
    n: int,
    warmup: float,
    duration: float,
    slices: int = 10,
    settle: float = 0.05,
) -> dict[str, dict[str, Any]]:
    """Echo on several servers at once, taking turns: the ratios between them survive noise.

    On a shared machine the CPU a process gets swings by a third for seconds at
    a time, so two servers measured one after the other can differ by that much
    for nothing they did. Here every system's N clients connect first; then the
    systems run in turn, ``duration / slices`` seconds each, ``slices`` times
    over (the order rotating each round), so each is measured across the whole
    stretch of time and meets the same noise. Only one system runs at a time
    (the others' clients wait at a gate; their servers idle), and a turn is
    recorded only after ``settle`` seconds, once the last system's answers in
    flight are in. Returns ``echo``'s figures for each system, or ``failed``.
    """
    results: dict[str, dict[str, Any]] = {}
    windows = {key: Window() for key in makes}
    gates = {key: asyncio.Event() for key in makes}
    clients: dict[str, list[adapters.Client]] = {}
    tasks: list[asyncio.Task[None]] = []

    async with new_http() as http:
        try:
            for key, make in makes.items():
                try:
                    clients[key] = await connect_all(make, http, n, budget=30)
                except Exception as exc:
                    results[key] = {"failed": f"connect: {type(exc).__name__}: {exc}"[:300]}
            running = [key for key in makes if key in clients]
            for key in running:
                tasks += [
                    asyncio.ensure_future(_echo_loop(c, windows[key], gates[key]))
                    for c in clients[key]
                ]
            # per system: seconds, server CPU, own CPU, messages, all while recorded
            spent = {key: [0.0, 0.0, 0.0, 0] for key in running}
            for key in running:  # warm-up, in turn
                gates[key].set()
                await asyncio.sleep(warmup)
                gates[key].clear()
            for round_ in range(slices):
                turn = round_ % max(1, len(running))
                for key in running[turn:] + running[:turn]:
                    window, probe = windows[key], probes[key]
                    gates[key].set()
                    await asyncio.sleep(settle)
                    cpu, own, began = probe.cpu(), time.process_time(), time.perf_counter()
                    count, window.recording = window.count, True
                    await asyncio.sleep(duration / slices)
                    window.recording = False
                    totals = spent[key]
                    totals[0] += time.perf_counter() - began
                    totals[1] += probe.cpu() - cpu
                    totals[2] += time.process_time() - own
                    totals[3] += window.count - count
                    gates[key].clear()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for opened in clients.values():
                await close_all(opened)
    for key in running:
        elapsed, server_cpu, own_cpu, done = spent[key]
        results[key] = {
            **_rates(int(done), elapsed, server_cpu, own_cpu),
            **_round_trips(windows[key]),
        }
    return results


async def push(
    make: Factory,
    probe: ServerProbe,
    *,
    n: int,
    warmup: float,
    duration: float,
    batch: int,
    windows: int,
) -> dict[str, Any]:
    """Each client keeps ``windows`` requests of ``batch`` messages outstanding."""
    window = Window()
    request = f"push:{batch}"
    async with new_http() as http:
        clients = await connect_all(make, http, n, budget=30)
        try:

            async def loop(client: adapters.Client) -> None:
                try:
                    asked = []
                    for _ in range(windows):
                        asked.append(time.perf_counter())
                        await client.send(request)
                    got = 0
                    while True:
                        await client.recv()
                        got += 1
                        window.count += 1
                        if got % batch == 0:
                            if window.recording:
                                window.samples.append(time.perf_counter() - asked.pop(0))
                            else:
                                asked.pop(0)
                            asked.append(time.perf_counter())
                            await client.send(request)
                except Exception as exc:
                    window.failed(exc)

            figures = await _measure([loop(c) for c in clients], window, probe, warmup, duration)
        finally:
            await close_all(clients)
    result: dict[str, Any] = {**figures, "errors": window.errors, "error": window.error_text}
    if batch == 1 and windows == 1:
        result["p50_ms"] = 1000 * percentile(window.samples, 0.50)
        result["p99_ms"] = 1000 * percentile(window.samples, 0.99)
    return result


async def broadcast(make: Factory, probe: ServerProbe, *, n: int, rounds: int) -> dict[str, Any]:
    """Time until all ``n`` connections have one broadcast message."""
    window = Window()
    state = {"got": 0, "want": n}
    done = asyncio.Event()
    async with new_http() as http:
        clients = await connect_all(make, http, n, budget=60)
        try:

            async def loop(client: adapters.Client) -> None:
                try:
                    while True:
                        await client.recv()
                        state["got"] += 1
                        if state["got"] >= state["want"]:
                            done.set()
                except Exception as exc:
                    window.failed(exc)

            tasks = [asyncio.ensure_future(loop(c)) for c in clients]
            times: list[float] = []
            try:
                await probe.settle(0.3, budget=5)
                gc.collect()
                start_cpu = probe.cpu()
                for r in range(rounds + 1):  # round 0 warms up
                    state["got"] = 0
                    done.clear()
                    started = time.perf_counter()
                    await clients[0].send(f"bcast:round-{r}")
                    await asyncio.wait_for(done.wait(), 20)
                    if r == 0:
                        start_cpu = probe.cpu()
                    else:
                        times.append(time.perf_counter() - started)
                    await asyncio.sleep(0.05)
                server_cpu = probe.cpu() - start_cpu
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await close_all(clients)
    return {
        "bcast_ms": 1000 * statistics.median(times),
        "bcast_best_ms": 1000 * min(times),
        "server_cpu_ms": 1000 * server_cpu / rounds,
        "errors": window.errors,
        "error": window.error_text,
    }


async def idle(make: Factory, probe: ServerProbe, *, n: int, quiet: float = 0.5) -> dict[str, Any]:
    """Server RSS growth per open connection (or parked poll), after a warm-up."""
    async with new_http() as http:
        warm = await connect_all(make, http, 20, budget=30)
        await asyncio.sleep(0.2)
        await close_all(warm)
        await probe.settle(quiet)
        before = probe.rss()
        clients = await connect_all(make, http, n, budget=60)
        try:
            await asyncio.sleep(0.2)
            await probe.settle(quiet)
            after = probe.rss()
        finally:
            await close_all(clients)
    return {"kib_per_conn": (after - before) / n / 1024, "rss_before_mib": before / 2**20}


WORKLOADS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "echo": echo,
    "push": push,
    "broadcast": broadcast,
    "idle": idle,
}


def use_uvloop() -> str:
    """Run the load generator on uvloop when it is installed; name the loop."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return f"uvloop {uvloop.__version__}"


def factory(wire: str, base: str) -> Factory:
    make = WIRES[wire]
    return lambda http: make(http, base)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wire", choices=sorted(WIRES), required=True)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    parser.add_argument("--pid", type=int, help="server pid, for CPU and RSS figures")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    args = parser.parse_args()
    use_uvloop()
    make = factory(args.wire, args.url.rstrip("/"))
    probe = ServerProbe(args.pid)
    kwargs: dict[str, Any] = {"n": args.clients}
    if args.workload in ("echo", "push"):
        kwargs.update(warmup=args.warmup, duration=args.duration)
    if args.workload == "push":
        kwargs.update(batch=args.batch, windows=args.windows)
    if args.workload == "broadcast":
        kwargs.update(rounds=args.rounds)
    result = asyncio.run(WORKLOADS[args.workload](make, probe, **kwargs))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
