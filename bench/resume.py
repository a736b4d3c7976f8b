"""What resumable sessions cost: memory per idle session and echo/push rates, on and off.

    python bench/resume.py              # 300 idle sessions; echo and push, 3 turns of 2 s each
    python bench/resume.py --smoke      # a few seconds

Each case runs its own server process (pinned to CPU 0 when ``taskset`` exists,
the clients to CPU 1), all at once, measured in turns with a rotating order,
so the figures of one run compare like with like:

- ``off``: ``Options(resumable=())``, drops end the session, as before resumption;
- ``on``: the default, the original client's way (no counts, no replay buffer);
- ``on, counting``: the project's client's way (``bullet_seen``: every message
  sent is kept in the bounded replay buffer until the client's next count).

Memory is the server's RSS growth per idle WebSocket session (after a
garbage collection in the server, read through ``/__rss``); rates are
round trips (echo) and pushed messages (push) per second over 20 sockets.
The ratios to ``off`` are what to read; absolute rates move with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import gc, resource, sys
from aiohttp import web
from bullet_py import Connection, Handler, Options, setup
from bullet_py.web.serve import run

class Bench(Handler):
    async def on_message(self, conn: Connection, message: str):
        if message.startswith("push:"):
            for _ in range(int(message[5:])):
                conn.send("p" * 100)
            return None
        return message

async def rss(request):
    gc.collect()
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return web.Response(text=str(pages * 4096))

resumable = () if sys.argv[2] == "off" else ("websocket", "eventsource", "poll")
options = Options(
    resumable=resumable,
    post_rate_per_session=None,
    session_mint_rate_per_address=None,
    session_mint_rate_per_cookie=None,
    ws_message_rate=None,
    ws_control_rate=None,
    max_sessions_per_address=None,
)
app = web.Application()
app.router.add_get("/__rss", rss)
setup(app, "/bullet", Bench, options=options)
run(app, host="127.0.0.1", port=int(sys.argv[1]))
"""

CASES = (("off", "off", False), ("on", "on", False), ("on, counting", "on", True))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


async def wait_up(url: str, deadline: float) -> None:
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url + "/__rss") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    raise RuntimeError("server did not start")


async def rss(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/__rss") as resp:
        return int(await resp.text())


async def start(mode: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = await asyncio.create_subprocess_exec(
        *pinned(0),
        sys.executable,
        "-c",
        SERVER,
        str(port),
        mode,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await wait_up(url, time.monotonic() + 20)
    return server, url


async def run_cases(idle: int, seconds: float, repeats: int) -> dict[str, dict[str, float]]:
    """All servers up at once; rates measured in turns (rotating order), memory first."""
    servers = {case: await start(mode) for case, mode, _ in CASES}
    query = {case: "?bullet_seen=0" if counting else "" for case, _, counting in CASES}
    results: dict[str, dict[str, float]] = {case: {} for case, _, _ in CASES}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            for case, (_, url) in servers.items():
                before = await rss(http, url)
                sockets = [
                    await http.ws_connect(url + "/bullet" + query[case]) for _ in range(idle)
                ]
                after = await rss(http, url)
                results[case]["kib_per_session"] = (after - before) / idle / 1024
                for ws in sockets:
                    await ws.close()
            sockets = {
                case: [await http.ws_connect(url + "/bullet" + query[case]) for _ in range(20)]
                for case, (_, url) in servers.items()
            }
            rates: dict[str, dict[str, list[float]]] = {
                case: {"echo": [], "push": []} for case in servers
            }
            order = list(servers)
            for turn in range(repeats):
                for case in order[turn % len(order) :] + order[: turn % len(order)]:
                    rates[case]["echo"].append(await echo_rate(sockets[case], seconds))
                    rates[case]["push"].append(await push_rate(sockets[case], seconds))
            for case, kinds in rates.items():
                for kind, values in kinds.items():
                    results[case][kind] = statistics.median(values)
            for group in sockets.values():
                for ws in group:
                    await ws.close()
    finally:
        for server, _ in servers.values():
            server.terminate()
            await asyncio.wait_for(server.wait(), 10)
    return results


async def echo_rate(sockets: list[aiohttp.ClientWebSocketResponse], seconds: float) -> float:
    count = 0
    deadline = time.monotonic() + seconds

    async def one(ws: aiohttp.ClientWebSocketResponse) -> None:
        nonlocal count
        while time.monotonic() < deadline:
            await ws.send_str("x" * 100)
            await ws.receive(timeout=10)
            count += 1

    began = time.monotonic()
    await asyncio.gather(*(one(ws) for ws in sockets))
    return count / (time.monotonic() - began)


async def push_rate(sockets: list[aiohttp.ClientWebSocketResponse], seconds: float) -> float:
    count = 0
    deadline = time.monotonic() + seconds

    async def one(ws: aiohttp.ClientWebSocketResponse) -> None:
        nonlocal count
        while time.monotonic() < deadline:
            await ws.send_str("push:100")
            for _ in range(100):
                await ws.receive(timeout=10)
            count += 100

    began = time.monotonic()
    await asyncio.gather(*(one(ws) for ws in sockets))
    return count / (time.monotonic() - began)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    idle, seconds, repeats = (30, 0.3, 1) if args.smoke else (300, 2.0, 3)
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    results = await run_cases(idle, seconds, repeats)
    base = results["off"]
    print("| case | KiB per idle session | echo msg/s | push msg/s | echo vs off | push vs off |")
    print("|---|---:|---:|---:|---:|---:|")
    for case, figures in results.items():
        print(
            f"| {case} | {figures['kib_per_session']:.2f} | {figures['echo']:,.0f} | "
            f"{figures['push']:,.0f} | {figures['echo'] / base['echo']:.2f}x | "
            f"{figures['push'] / base['push']:.2f}x |"
        )


if __name__ == "__main__":
    asyncio.run(main())
