"""WebSocket echo with a client much cheaper than any server, to compare servers' costs.

In ``bench/run.py`` each echo client is an aiohttp ``ClientWebSocketResponse``
driven by a coroutine; on its one core that load generator tops out near the
servers' own rate, so the servers are not saturated and their msg/s figures
crowd together. Here each connection is a bare ``asyncio.Protocol`` that
writes one pre-built masked text frame and writes the next as soon as a
frame comes back: about half the CPU per message of the cheapest server, so
the server is the bottleneck (check *server CPU*) and msg/s measures it.

Same servers, pinning and environment as ``bench/run.py``; systems: aiohttp
(raw), plain, bullet (``bench/servers/bullet_bench.py``: it echoes, with the rate
limits off; on uvloop, as ``bullet_py.web.serve.run`` picks it), erlang (when built),
and plain-uv and aiohttp-uv, the two aiohttp baselines on uvloop.

    python bench/lean_echo.py --repeats 3 --systems aiohttp,plain,bullet,erlang
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from typing import Any

import loadgen
import run

MESSAGE = b"e" * 90 + b"0123456789"
# A masked text frame with the all-zero key: the payload goes out unchanged.
FRAME = bytes([0x81, 0x80 | len(MESSAGE)]) + b"\0\0\0\0" + MESSAGE
PONG = bytes([0x8A, 0x80]) + b"\0\0\0\0"
# bench/run.py's server keys; the "-uv" baselines are the same scripts on uvloop.
SERVERS = ("aiohttp", "aiohttp-uv", "plain", "plain-uv", "bullet", "erlang")


class Echoer(asyncio.Protocol):
    """One WebSocket: handshake, then one frame in flight, counted on each reply."""

    def __init__(self, port: int, counts: list[int]) -> None:
        self.port = port
        self.counts = counts
        self.buffer = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        transport.write(
            b"GET /bullet HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" % self.port
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if b" 101 " not in buffer[: buffer.find(b"\r\n")]:
                self.upgraded.set_exception(ConnectionError(buffer[:80].decode(errors="replace")))
                return
            self.upgraded.set_result(None)
            buffer = buffer[end + 4 :]
        while len(buffer) >= 2:
            size, head = buffer[1] & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    break
                size, head = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    break
                size, head = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < head + size:
                break
            opcode = buffer[0] & 0x0F
            buffer = buffer[head + size :]
            if opcode == 0x1:
                self.counts[0] += 1
                self.transport.write(FRAME)
            elif opcode == 0x9:
                self.transport.write(PONG)
            elif opcode == 0x8:
                self.transport.close()
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed"))


async def measure(server: run.Server, clients: int, warmup: float, duration: float) -> dict:
    loop = asyncio.get_running_loop()
    counts = [0]
    probe = loadgen.ServerProbe(server.pid)
    transports = []
    try:
        for _ in range(clients):
            transport, protocol = await loop.create_connection(
                lambda: Echoer(server.port, counts), "127.0.0.1", server.port
            )
            transports.append(transport)
            await asyncio.wait_for(protocol.upgraded, 10)
        for transport in transports:
            transport.write(FRAME)
        await asyncio.sleep(warmup)
        first, cpu, own, began = counts[0], probe.cpu(), time.process_time(), time.perf_counter()
        await asyncio.sleep(duration)
        elapsed = time.perf_counter() - began
        done, cpu, own = counts[0] - first, probe.cpu() - cpu, time.process_time() - own
    finally:
        for transport in transports:
            transport.abort()
    return {
        "rate": done / elapsed,
        "server_us": 1e6 * cpu / done if done else float("nan"),
        "server_cpu": cpu / elapsed,
        "client_cpu": own / elapsed,
    }


async def main_async(args: argparse.Namespace, systems: list[str]) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {system: [] for system in systems}
    for repeat in range(args.repeats):
        for system in systems[repeat % len(systems) :] + systems[: repeat % len(systems)]:
            server = run.Server(system)
            await server.start()
            try:
                result = await measure(server, args.clients, args.warmup, args.duration)
            finally:
                await server.stop()
            results[system].append(result)
            print(
                f"   {system:<8} " + "  ".join(f"{k}={v:,.1f}" for k, v in result.items()),
                file=sys.stderr,
                flush=True,
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--systems", default="aiohttp,plain,bullet,erlang")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    systems = [x for x in args.systems.split(",") if x]
    if unknown := sorted(set(systems) - set(SERVERS)):
        parser.error(f"unknown systems {unknown}: choose from {', '.join(SERVERS)}")
    if "erlang" in systems and (why := run.erlang_missing()):
        print(f"skipping the original Erlang Bullet: {why}", file=sys.stderr)
        systems.remove("erlang")
    if run.can_pin():
        os.sched_setaffinity(0, {run.CLIENT_CORE})
    loop_name = loadgen.use_uvloop()
    try:
        results = asyncio.run(main_async(args, systems))
    finally:
        run.kill_everything()
    base = "plain" if "plain" in results else systems[0]
    print(f"WebSocket echo, lean client ({args.clients} clients, {loop_name}), ")
    print(f"median of {args.repeats}; ratios against {run.NAMES[base]}, per repeat.\n")
    print("| system | msg/s | × | server µs/msg | × | server CPU | client CPU |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for system, rows in results.items():

        def med(name: str, rows: list[dict] = rows) -> float:
            return statistics.median(r[name] for r in rows)

        def times(name: str, rows: list[dict] = rows) -> float:
            pairs = zip(rows, results[base], strict=True)
            return statistics.median(a[name] / b[name] for a, b in pairs)

        print(
            f"| {run.NAMES[system]} | {med('rate'):,.0f} | {times('rate'):.2f}× "
            f"| {med('server_us'):.1f} | {times('server_us'):.2f}× "
            f"| {med('server_cpu'):.2f} | {med('client_cpu'):.2f} |"
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
