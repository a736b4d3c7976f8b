"""Instructions per WebSocket echo, counted by callgrind: a cost that other jobs cannot move.

    python bench/echo_cost.py --systems plain,bullet --clients 1,20
    python bench/echo_cost.py --systems bullet --push 50 --src ../old/src   # two versions
    python bench/echo_cost.py --systems bullet --push 50 --poll          # long-poll backlog

CPU time per message moves by half on a shared machine, and this machine's
hardware counters are not available (``perf stat -e instructions`` says
"not supported"). So each server runs under ``valgrind --tool=callgrind``,
which counts every instruction it executes: once for ``--echoes`` echoes
and once for twice as many, and the difference, divided by the extra
echoes, is the server's cost of one echo, start-up and shutdown cancelled
out. ``--clients`` lean clients (``bench/lean_echo.py``'s bare
``asyncio.Protocol`` frames) each keep one frame in flight: with one, every
echo is a loop turn of its own (the ``epoll_wait``, the ``recv``, the
``send`` included); with many, a turn reads several frames, as a busy server does.

Systems: plain (``bench/peers/plain_aiohttp.py``), aiohttp (raw), bullet
(``bench/servers/bullet_bench.py``, which echoes with the per-WebSocket
message rate off: ``examples/echo.py``'s default of 200 a second would close
these clients; on uvloop when installed, as ``bullet_py.web.serve.run`` serves:
``BULLET_EVENT_LOOP=asyncio`` for asyncio's loop), and plain-uv and aiohttp-uv,
the first two on uvloop. Needs valgrind (``apt-get install valgrind``).

``--poll`` (with ``--push K``, bullet only) counts the long-poll backlog of
``bench/run.py``'s push-poll row instead: each client is one keep-alive
HTTP/1.1 connection that fetches its cookie, asks for K messages twice
(``POST push:K``), then polls (``GET``), one message an answer, and asks for K
more each time K have arrived, so its backlog never runs dry.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import run
from lean_echo import FRAME, PONG
from post_profile import _cookie, _request

# bench/run.py's servers; "-uv": the same script on uvloop. bullet_py's bench server
# serves on what bullet_py.web.serve.run picks: uvloop when installed, unless
# BULLET_EVENT_LOOP=asyncio is set in this script's environment.
SYSTEMS = ("plain", "plain-uv", "aiohttp", "aiohttp-uv", "bullet")


class Counted(asyncio.Protocol):
    """One WebSocket that echoes until ``limit`` echoes are done over all clients."""

    def __init__(self, port: int, state: dict[str, Any]) -> None:
        self.port = port
        self.state = state
        self.buffer = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
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
            self.upgraded.set_result(None)
            buffer = buffer[end + 4 :]
        state = self.state
        while len(buffer) >= 2 and len(buffer) >= 2 + (buffer[1] & 0x7F):
            opcode, size = buffer[0] & 0x0F, buffer[1] & 0x7F
            buffer = buffer[2 + size :]
            if opcode == 0x9:
                self.transport.write(PONG)
            elif opcode == 0x1:
                state["done"] += 1
                batch = state["batch"]
                if state["done"] % batch == 0 and state["sent"] < state["limit"]:
                    state["sent"] += batch
                    self.transport.write(state["frame"])
                elif state["done"] == state["limit"]:
                    state["finished"].set_result(None)
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        finished = self.state["finished"]
        if not finished.done():
            finished.set_exception(ConnectionError("the server closed a connection"))


class Polling(asyncio.Protocol):
    """One long-polling client: ``POST push:K`` twice, then ``GET`` after ``GET``.

    Requests go one at a time on one keep-alive connection; every K answers
    that carry a message, it asks for K more (while the run's limit allows).
    """

    def __init__(self, cookie: str | None, state: dict[str, Any]) -> None:
        self.state = state
        self.get = _request("GET", cookie)
        self.ask = _request("POST", cookie, b"push:%d" % state["batch"])
        self.buffer = b""
        self.received = 0
        self.asks = 0  # requests for K more still to send, before the next poll
        self.polling = False  # the request in flight is a poll
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._ask_more()
        self._ask_more()
        self._send()

    def _ask_more(self) -> None:
        state = self.state
        if state["sent"] + state["batch"] <= state["limit"]:
            state["sent"] += state["batch"]
            self.asks += 1

    def _send(self) -> None:
        self.polling = not self.asks
        if self.asks:
            self.asks -= 1
        self.transport.write(self.get if self.polling else self.ask)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        state = self.state
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head = buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(buffer) < end + 4 + length:
                break
            status = head[9:12]
            if status not in (b"200", b"204"):
                self._fail(RuntimeError(head.decode("latin-1")))
                return
            buffer = buffer[end + 4 + length :]
            if self.polling and status == b"200" and length:
                self.received += 1
                state["done"] += 1
                if self.received % state["batch"] == 0:
                    self._ask_more()
                if state["done"] == state["limit"]:
                    state["finished"].set_result(None)
            self._send()
        self.buffer = buffer

    def _fail(self, exc: Exception) -> None:
        if not self.state["finished"].done():
            self.state["finished"].set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"the server closed a connection: {exc}"))


async def _drive_polls(port: int, clients: int, messages: int, batch: int) -> None:
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {
        "done": 0,
        "sent": 0,
        "limit": messages,
        "finished": loop.create_future(),
        "batch": batch,
    }
    transports = []
    for _ in range(clients):
        cookie = await _cookie(port)
        transport, _ = await loop.create_connection(
            lambda cookie=cookie: Polling(cookie, state), "127.0.0.1", port
        )
        transports.append(transport)
    await asyncio.wait_for(state["finished"], 600)
    for transport in transports:
        transport.abort()


def _push_frame(batch: int) -> bytes:
    """A masked (all-zero key) client text frame asking the bench server for ``batch`` pushes."""
    message = b"push:%d" % batch
    return bytes([0x81, 0x80 | len(message)]) + b"\0\0\0\0" + message


async def _drive(port: int, clients: int, echoes: int, push: int = 0) -> None:
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {
        "done": 0,
        "sent": 0,
        "limit": echoes,
        "finished": loop.create_future(),
        # Echo: one frame in flight a client. Push (--push K): each request brings K.
        "batch": push or 1,
        "frame": _push_frame(push) if push else FRAME,
    }
    transports = []
    for _ in range(clients):
        transport, protocol = await loop.create_connection(
            lambda: Counted(port, state), "127.0.0.1", port
        )
        transports.append(transport)
        await asyncio.wait_for(protocol.upgraded, 120)
    for transport in transports[: max(1, echoes // state["batch"])]:
        state["sent"] += state["batch"]
        transport.write(state["frame"])
    await asyncio.wait_for(state["finished"], 600)
    for transport in transports:
        transport.abort()


def count(
    system: str,
    clients: int,
    echoes: int,
    push: int = 0,
    src: Path | None = None,
    poll: bool = False,
) -> int:
    """Instructions the server executed, start to exit, having served ``echoes`` messages.

    ``src``: the ``src`` folder of the bullet_py to run (another checkout, to
    compare two versions); this checkout's by default.
    """
    port = run.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, **run.CHILD_ENV, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(src or run.ROOT / "src"), env.get("PYTHONPATH", "")) if p
        )
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(run.SCRIPTS[system]),
                *run.SCRIPT_ARGS.get(system, []),
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=run.ROOT,
            text=True,
        )
        assert server.stdout is not None
        try:
            while not (line := server.stdout.readline()).startswith("listening on"):
                if not line:
                    raise RuntimeError(f"{system} exited before listening")
            if poll:
                asyncio.run(_drive_polls(port, clients, echoes, push))
            else:
                asyncio.run(_drive(port, clients, echoes, push))
            server.send_signal(signal.SIGINT)
            server.wait(300)
        finally:
            if server.poll() is None:
                server.kill()
        found = re.search(r"^summary:\s*(\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            raise RuntimeError("no summary in the callgrind output")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--systems", default="plain,bullet")
    parser.add_argument("--clients", default="1,20", help="comma-separated client counts")
    parser.add_argument("--echoes", type=int, default=4000, help="the first run's messages")
    parser.add_argument(
        "--push", type=int, default=0, help="K: pushes instead of echoes, K per request"
    )
    parser.add_argument(
        "--src",
        type=Path,
        action="append",
        default=[],
        help="another checkout's src folder to measure beside this one (repeatable)",
    )
    parser.add_argument(
        "--poll", action="store_true", help="with --push K: the long-poll backlog (bullet only)"
    )
    args = parser.parse_args()
    if unknown := sorted(set(args.systems.split(",")) - set(SYSTEMS)):
        parser.error(f"unknown systems {unknown}: choose from {', '.join(SYSTEMS)}")
    if args.poll and (not args.push or args.systems != "bullet"):
        parser.error("--poll needs --push K and --systems bullet")
    what = f"push (K={args.push})" if args.push else "echo"
    if args.poll:
        what = f"long-poll message (K={args.push})"
    trees: list[tuple[str, Path | None]] = [("this checkout", None)]
    trees += [(str(src), src) for src in args.src]
    print(f"| system | bullet_py | clients | instructions per {what} |")
    print("|---|---|--:|--:|")
    for clients in (int(c) for c in args.clients.split(",")):
        for system in args.systems.split(","):
            for label, src in trees if system == "bullet" else trees[:1]:
                one = count(system, clients, args.echoes, args.push, src, args.poll)
                two = count(system, clients, 2 * args.echoes, args.push, src, args.poll)
                per = (two - one) / args.echoes
                print(f"| {run.NAMES[system]} | {label} | {clients} | {per:,.0f} |")


if __name__ == "__main__":
    main()
