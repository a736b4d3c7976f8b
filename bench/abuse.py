"""One hostile WebSocket client against another's echo round trip (docs/robustness.md items 77-78).

Runs ``bench/robustness_server.py`` in a child process, once with the default
budgets and once with every rate limit off (then only the reader's yielding
keeps the loop fair). In each, a victim echoes ``--echoes`` messages one at a
time, alone, then while a flooder sends PING frames as fast as it can
(reading its PONGs), then while a flooder sends 1-byte messages (reading the
echoes). Prints the victim's round-trip p50 / p99 and what became of the
flooder. No assertions: the figures go in docs/robustness.md.

    python bench/abuse.py [--echoes 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.robustness.raw import OP_PING, OP_TEXT, RawWebSocket, ws_frame

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_server(port: int, limits: bool) -> asyncio.subprocess.Process:
    args = [sys.executable, str(ROOT / "bench" / "robustness_server.py"), "--port", str(port)]
    if not limits:
        args.append("--no-rate-limit")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = await asyncio.create_subprocess_exec(*args, env=env)
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return proc
        except OSError:
            await asyncio.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


async def flood(port: int, opcode: int, stop: asyncio.Event) -> str:
    """Send frames of ``opcode`` in batches as fast as the socket takes them; the outcome."""
    ws = await RawWebSocket.connect(port)
    batch = b"".join(ws_frame(opcode, b"x") for _ in range(256))
    sent = 0
    outcome = "still open"

    async def drain() -> None:
        nonlocal outcome
        while True:
            frame = await ws.recv(timeout=30)
            if frame is None:
                outcome = "dropped"
                return
            if frame.close_code is not None:
                outcome = f"closed {frame.close_code}"
                return

    reader = asyncio.ensure_future(drain())
    try:
        while not stop.is_set() and not reader.done():
            await ws.conn.send(batch)
            sent += 256
    except (ConnectionError, OSError):
        pass
    if not reader.done():
        reader.cancel()
    await ws.close()
    return f"{outcome} after {sent} frames sent"


async def victim(url: str, echoes: int) -> list[float]:
    rtts: list[float] = []
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, heartbeat=None)
        for i in range(echoes):
            began = time.perf_counter()
            await ws.send_str(f"v{i}")
            reply = await ws.receive(timeout=30)
            assert reply.data == f"v{i}", reply
            rtts.append((time.perf_counter() - began) * 1000)
        await ws.close()
    return rtts


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def scenario(port: int, echoes: int, opcode: int | None) -> tuple[list[float], str]:
    url = f"http://127.0.0.1:{port}/bullet"
    if opcode is None:
        return await victim(url, echoes), "-"
    stop = asyncio.Event()
    flooder = asyncio.ensure_future(flood(port, opcode, stop))
    await asyncio.sleep(0.2)  # the flood is under way
    rtts = await victim(url, echoes)
    stop.set()
    return rtts, await flooder


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--echoes", type=int, default=500)
    args = parser.parse_args()
    print("| limits | attack | victim RTT p50 ms | p99 ms | flooder |")
    print("|---|---|---|---|---|")
    for limits in (True, False):
        port = free_port()
        proc = await start_server(port, limits)
        try:
            for name, opcode in (
                ("none", None),
                ("PING flood", OP_PING),
                ("1-byte messages", OP_TEXT),
            ):
                rtts, outcome = await scenario(port, args.echoes, opcode)
                label = "default" if limits else "all off"
                print(
                    f"| {label} | {name} | {p(rtts, 50):.2f} | {p(rtts, 99):.2f} | {outcome} |",
                    flush=True,
                )
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)


if __name__ == "__main__":
    asyncio.run(main())
