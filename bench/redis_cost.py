"""What Redis costs: pushes and long-poll echoes, in memory and through Redis, in one run.

    python bench/redis_cost.py              # about three minutes (3 rounds)
    python bench/redis_cost.py --smoke      # a few seconds, tiny counts (the figures mean nothing)
    python bench/redis_cost.py --profile DIR  # cProfile each server: DIR/<setup>-<port>.prof
    python bench/redis_cost.py --only 'push|echo' --json out.json  # some cells; raw figures

Starts its own ``redis-server`` (a free port of 127.0.0.1, no persistence) and
the server processes of ``bench/cluster.py`` (its ``Bench`` handler, every rate
limit off). Every client is a bare ``asyncio.Protocol`` (no HTTP or WebSocket
library), so the clients cost far less than the servers and the rates measure
the servers (and Redis), not this process. Workloads:

- **push**: ``--pages`` WebSocket pages; pushers (one lean WebSocket each) send
  ``bcast:N`` for ``--pushes`` numbers as fast as they are read, and the clock
  stops when every page has every push. pushes/s counts each broadcast once.
- **long-poll echo**: ``--clients`` sessions, each on a keep-alive connection
  POSTing a 100-character message, one in flight, read back from the POST's
  answer (``bench/run.py``'s long-poll row), for ``--duration`` seconds after
  ``--warmup``.
- **long-poll via the queue**: the same sessions POST ``send:X``; the handler
  pushes X (``conn.send``) and the session's parked GET (its own connection)
  answers with it; the next GET and POST go out then. With Redis each message
  is a queue write, a take and an acknowledgement in Redis.

Setups: (a) memory, 1 process; (b) Redis, 1 worker; with 2 Redis workers,
(c) pushes made on worker 1 to pages on worker 1 (same-worker), (d) pushes made
on worker 0 to pages on worker 1 (cross-worker), and the aggregate: sessions
split over both workers (pushes: one pusher per worker, pages on both), against
the same load on 1 worker. The ratios the targets name are printed under the
table, each computed within a round (cells of one round are measured seconds
apart, every server running throughout) and summarised as the median and the
range over ``--repeats`` rounds: on a shared machine the range is the noise.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster

MESSAGE = b"m" * 90 + b"0123456789"
TIMEOUT = 60.0


# --- lean WebSocket -------------------------------------------------------------------


def text_frame(payload: bytes) -> bytes:
    """A masked text frame with the all-zero key: the payload goes out unchanged."""
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    else:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


PONG = bytes([0x8A, 0x80]) + b"\0\0\0\0"
#: Code 1001, going away: what a browser sends when its page closes. It ends the
#: session; a socket closed without it is a drop, and with Redis a dropped session
#: is parked for its client to resume, still taking every broadcast (a Redis
#: script each): later cells would pay for this cell's pages.
CLOSE = bytes([0x88, 0x82]) + b"\0\0\0\0" + (1001).to_bytes(2, "big")


class Page(asyncio.Protocol):
    """One WebSocket: counts the text frames it receives; done once ``expect`` arrived."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.buffer = b""
        self.transport: Any = None
        loop = asyncio.get_running_loop()
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.received = 0
        self.expect = 0
        self.last = 0.0
        self.done: asyncio.Future[None] = loop.create_future()
        self.closing = False  # closed by us: no error
        self.ended: asyncio.Future[None] = loop.create_future()  # the connection is gone

    async def close(self) -> None:
        """End the session as a closing page does: a close frame, then wait for the end."""
        self.closing = True
        if not self.ended.done():
            self.transport.write(CLOSE)
            try:
                await asyncio.wait_for(asyncio.shield(self.ended), TIMEOUT)
            except TimeoutError:
                self.transport.abort()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(
            b"GET /bullet HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" % self.port
        )

    def expecting(self, count: int) -> asyncio.Future[None]:
        self.received = 0
        self.expect = count
        self.done = asyncio.get_running_loop().create_future()
        return self.done

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
        got = 0
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
                got += 1
            elif opcode == 0x9:
                self.transport.write(PONG)
            elif opcode == 0x8:
                if self.closing:  # the answer to ours: the session ended
                    self.transport.close()
                elif not self.done.done():
                    self.done.set_exception(ConnectionError("closed by the server"))
        self.buffer = buffer
        if got:
            self.received += got
            self.last = time.perf_counter()
            if self.received >= self.expect and not self.done.done():
                self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)
        for future in (self.upgraded, self.done):
            if not future.done() and not self.closing:
                future.set_exception(exc or ConnectionError("closed"))


async def open_page(port: int) -> Page:
    """A page whose session is open (its echo came back)."""
    loop = asyncio.get_running_loop()
    _, page = await loop.create_connection(lambda: Page(port), "127.0.0.1", port)
    await asyncio.wait_for(page.upgraded, TIMEOUT)
    ready = page.expecting(1)
    page.transport.write(text_frame(b"ready"))
    await asyncio.wait_for(ready, TIMEOUT)
    return page


# --- lean long-poll ---------------------------------------------------------------------


def http_request(method: str, port: int, cookie: str | None, body: bytes = b"") -> bytes:
    """A request as the original client's XHR transport makes it."""
    lines = [
        f"{method} /bullet HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
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


class Counter:
    """What the long-poll clients of one measure share."""

    def __init__(self) -> None:
        self.answered = 0
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fail(self, exc: BaseException) -> None:
        if not self.failed.done():
            self.failed.set_exception(exc)


class Http(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; ``on_answer(status)`` after each whole answer."""

    def __init__(self, counter: Counter, on_answer: Callable[[bytes], None]) -> None:
        self.counter = counter
        self.on_answer = on_answer
        self.buffer = b""
        self.transport: Any = None
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head = buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length :]
            self.on_answer(head[9:12])
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.counter.fail(ConnectionError(f"closed: {exc}"))


async def fetch_cookie(port: int) -> str:
    """One GET without a cookie, as the original client's first poll: the cookie it gets."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(http_request("GET", port, None))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    writer.close()
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("set-cookie:"):
            return line.split(":", 1)[1].split(";", 1)[0].strip()
    raise RuntimeError(f"no cookie: {head[:80]!r}")


class EchoSession:
    """POST the message, read the echo from the answer, POST again."""

    def __init__(self, port: int, cookie: str, counter: Counter) -> None:
        self.request = http_request("POST", port, cookie, MESSAGE)
        self.counter = counter
        self.conn = Http(counter, self.answered)
        self.stopping = False

    def answered(self, status: bytes) -> None:
        if status != b"200":
            self.counter.fail(RuntimeError(f"POST answered {status!r}"))
            return
        self.counter.answered += 1
        if not self.stopping:
            self.conn.transport.write(self.request)

    def start(self) -> None:
        self.conn.transport.write(self.request)


class QueueSession:
    """A GET parked; POST ``send:X``; the GET's answer counts, then the next GET and POST."""

    def __init__(self, port: int, cookie: str, counter: Counter) -> None:
        self.get = http_request("GET", port, cookie)
        self.post = http_request("POST", port, cookie, b"send:" + MESSAGE)
        self.counter = counter
        self.poll = Http(counter, self.polled)
        self.sender = Http(counter, self.sent)
        self.stopping = False

    def polled(self, status: bytes) -> None:
        if status == b"204":  # the poll's timeout: poll again
            self.poll.transport.write(self.get)
            return
        if status != b"200":
            self.counter.fail(RuntimeError(f"GET answered {status!r}"))
            return
        self.counter.answered += 1
        if not self.stopping:
            self.poll.transport.write(self.get)
            self.sender.transport.write(self.post)

    def sent(self, status: bytes) -> None:
        if status not in (b"200", b"204"):
            self.counter.fail(RuntimeError(f"POST answered {status!r}"))

    def start(self) -> None:
        self.poll.transport.write(self.get)
        self.sender.transport.write(self.post)


async def _connect(port: int, factory: Callable[[], Http]) -> Http:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(factory, "127.0.0.1", port)
    return conn


async def long_poll(ports: list[int], queue: bool, args: argparse.Namespace) -> float:
    """Messages/s of ``--clients`` sessions spread over ``ports`` (each stays on its worker)."""
    counter = Counter()
    sessions: list[EchoSession | QueueSession] = []
    conns: list[Http] = []
    try:
        for i in range(args.clients):
            port = ports[i % len(ports)]
            cookie = await fetch_cookie(port)
            if queue:
                q = QueueSession(port, cookie, counter)
                conns.append(await _connect(port, lambda q=q: q.poll))  # type: ignore[misc]
                conns.append(await _connect(port, lambda q=q: q.sender))  # type: ignore[misc]
                sessions.append(q)
            else:
                e = EchoSession(port, cookie, counter)
                conns.append(await _connect(port, lambda e=e: e.conn))  # type: ignore[misc]
                sessions.append(e)
        for session in sessions:
            session.start()
        await _window(counter, args.warmup)
        start_n, start_t = counter.answered, time.perf_counter()
        await _window(counter, args.duration)
        rate = (counter.answered - start_n) / (time.perf_counter() - start_t)
    finally:
        for session in sessions:
            session.stopping = True
        for conn in conns:
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()
    return rate


async def _window(counter: Counter, seconds: float) -> None:
    """Let the clients run ``seconds``; a failed request raises."""
    done, _ = await asyncio.wait([counter.failed], timeout=seconds)
    if done:
        counter.failed.result()


# --- pushes -----------------------------------------------------------------------------


async def pushes(pusher_ports: list[int], page_ports: list[int], args: argparse.Namespace) -> float:
    """Pushes/s: each pusher broadcasts ``--pushes`` numbers to every page (and pusher)."""
    pages = [await open_page(page_ports[i % len(page_ports)]) for i in range(args.pages)]
    pushers = [await open_page(port) for port in pusher_ports]
    try:
        rounds = [(50, False), (args.pushes, True)]  # a warm-up round, then the measured one
        rate = 0.0
        for count, counted in rounds:
            total = count * len(pushers)
            waits = [page.expecting(total) for page in pages]
            for pusher in pushers:
                pusher.expecting(total)  # a pusher is a page too: it gets every broadcast
            start = time.perf_counter()
            frames = [text_frame(b"bcast:%d" % n) for n in range(count)]
            for i in range(0, count, 100):  # in slices, so every pusher's frames interleave
                for pusher in pushers:
                    pusher.transport.write(b"".join(frames[i : i + 100]))
                await asyncio.sleep(0)
            await asyncio.wait_for(asyncio.gather(*waits), TIMEOUT)
            elapsed = max(page.last for page in pages) - start
            if counted:
                rate = total / elapsed
        return rate
    finally:
        await asyncio.gather(*(page.close() for page in [*pages, *pushers]))


# --- the run --------------------------------------------------------------------------------

#: Every figure: (key, setup, workload). Keys name the cells the ratios use.
CELLS = [
    ("a.push", "(a) memory, 1 process", "push"),
    ("b.push", "(b) redis, 1 worker", "push"),
    ("c.push", "(c) redis, 2 workers: push on 1, pages on 1 (same-worker)", "push"),
    ("d.push", "(d) redis, 2 workers: push on 0, pages on 1 (cross-worker)", "push"),
    ("one.push", "redis, 1 worker: 2 pushers (the aggregate's baseline)", "push"),
    ("two.push", "redis, 2 workers: a pusher on each, pages on both (aggregate)", "push"),
    ("a.echo", "(a) memory, 1 process", "echo"),
    ("b.echo", "(b) redis, 1 worker", "echo"),
    ("two.echo", "redis, 2 workers: sessions split (aggregate)", "echo"),
    ("a.queue", "(a) memory, 1 process", "queue"),
    ("b.queue", "(b) redis, 1 worker", "queue"),
    ("two.queue", "redis, 2 workers: sessions split (aggregate)", "queue"),
]

#: The ratios: (what, target, numerator, denominator).
RATIOS = [
    ("pushes, redis 1 worker / memory (b/a)", "≥ 0.8", "b.push", "a.push"),
    ("long-poll echo, redis 1 worker / memory (b/a)", "≥ 0.8", "b.echo", "a.echo"),
    ("long-poll via queue, redis 1 worker / memory (b/a)", "≥ 0.8", "b.queue", "a.queue"),
    ("pushes, cross-worker / same-worker (d/c)", "≥ 0.8", "d.push", "c.push"),
    ("pushes, 2 workers / 1 worker (aggregate)", "reported", "two.push", "one.push"),
    ("long-poll echo, 2 workers / 1 worker", "reported", "two.echo", "b.echo"),
    ("long-poll via queue, 2 workers / 1 worker", "reported", "two.queue", "b.queue"),
]


def _port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


@contextlib.asynccontextmanager
async def _servers(
    count: int, redis_url: str | None, prefix: str, args: argparse.Namespace
) -> AsyncIterator[list[int]]:
    if args.profile:
        os.environ["BULLET_BENCH_PROFILE"] = str(Path(args.profile) / prefix)
    try:
        async with cluster.servers(count, redis_url, prefix) as urls:
            yield [_port(url) for url in urls]
    finally:
        os.environ.pop("BULLET_BENCH_PROFILE", None)


async def run(args: argparse.Namespace) -> dict[str, list[float]]:
    """Every cell, ``--repeats`` rounds; in each round every cell once, in the same order.

    All the servers run for the whole run (idle but for the cell measured), so
    the cells compared by a ratio are measured minutes apart at most.
    """
    async with contextlib.AsyncExitStack() as stack:
        redis_url = await stack.enter_async_context(cluster.redis_server())

        async def start(count: int, redis: bool, prefix: str) -> list[int]:
            url = redis_url if redis else None
            return await stack.enter_async_context(_servers(count, url, prefix, args))

        # Pushes and polls on servers of their own: a broadcast reaches every session,
        # and the polling sessions a long-poll cell leaves behind (they end idle, long
        # after) would each cost a push, in Redis a script call, per broadcast.
        (mem,), (one,), (w0, w1) = (
            await start(1, False, "mem"),
            await start(1, True, "r1"),
            await start(2, True, "r2"),
        )
        (pmem,), (pone,), (p0, p1) = (
            await start(1, False, "pmem"),
            await start(1, True, "pr1"),
            await start(2, True, "pr2"),
        )
        workloads: dict[str, Callable[[], Awaitable[float]]] = {
            "a.push": lambda: pushes([mem], [mem], args),
            "b.push": lambda: pushes([one], [one], args),
            "c.push": lambda: pushes([w1], [w1], args),
            "d.push": lambda: pushes([w0], [w1], args),
            "one.push": lambda: pushes([one, one], [one], args),
            "two.push": lambda: pushes([w0, w1], [w0, w1], args),
            "a.echo": lambda: long_poll([pmem], False, args),
            "b.echo": lambda: long_poll([pone], False, args),
            "two.echo": lambda: long_poll([p0, p1], False, args),
            "a.queue": lambda: long_poll([pmem], True, args),
            "b.queue": lambda: long_poll([pone], True, args),
            "two.queue": lambda: long_poll([p0, p1], True, args),
        }
        figures: dict[str, list[float]] = {key: [] for key in cells(args)}
        for turn in range(args.repeats):
            for key in figures:
                figures[key].append(await workloads[key]())
                if args.verbose:
                    print(f"round {turn + 1} {key}: {figures[key][-1]:,.0f}", file=sys.stderr)
    return figures


def cells(args: argparse.Namespace) -> list[str]:
    """The keys of the cells to measure (``--only``: a regex searched in each key)."""
    return [key for key, _, _ in CELLS if not args.only or re.search(args.only, key)]


def ratios(figures: dict[str, list[float]]) -> dict[str, list[float]]:
    """Each ratio whose two cells were measured: its value in every round."""
    return {
        what: [n / d for n, d in zip(figures[num], figures[den], strict=True) if d]
        for what, _, num, den in RATIOS
        if num in figures and den in figures
    }


def _spread(values: list[float], fmt: str) -> str:
    """Median, and the range over the rounds when there were several."""
    mid = statistics.median(values)
    if len(values) < 2:
        return format(mid, fmt)
    return f"{format(mid, fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def report(figures: dict[str, list[float]], args: argparse.Namespace) -> str:
    lines = [
        f"Pushes: {args.pages} WebSocket pages, {args.pushes} broadcasts per pusher, back to "
        f"back; pushes/s counts each broadcast once (a page gets every one). Long-poll: "
        f"{args.clients} sessions, one message in flight each, {args.duration:g} s after "
        f"{args.warmup:g} s. Median of {args.repeats} rounds (lowest–highest); every round "
        "measures every cell once, in this order.",
        "",
        "| setup | workload | per second |",
        "|---|---|---:|",
    ]
    names = {"push": "pushes", "echo": "long-poll echo msgs", "queue": "long-poll via queue msgs"}
    for key, setup, workload in CELLS:
        if key in figures:
            lines.append(f"| {setup} | {names[workload]} | {_spread(figures[key], ',.0f')} |")
    lines += ["", "| ratio (per round, then the median) | target | measured |", "|---|---:|---:|"]
    measured = ratios(figures)
    for what, target, _, _ in RATIOS:
        if what in measured:
            lines.append(f"| {what} | {target} | {_spread(measured[what], '.2f')} |")
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
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--pushes", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3, help="rounds over every cell")
    parser.add_argument("--profile", help="cProfile every server into this directory")
    parser.add_argument("--verbose", action="store_true", help="each figure as it is measured")
    parser.add_argument("--smoke", action="store_true", help="tiny counts, a few seconds")
    parser.add_argument("--only", help="regex searched in each cell's key (a.push, b.echo...)")
    parser.add_argument("--json", type=Path, help="also write the figures and ratios here")
    args = parser.parse_args()
    if args.smoke:
        args.pages, args.pushes, args.clients, args.repeats = 3, 60, 3, 1
        args.warmup, args.duration = 0.2, 0.3
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    if not cells(args):
        parser.error(f"--only {args.only!r} matches no cell")
    figures = asyncio.run(run(args))
    print(report(figures, args))
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "ratios": ratios(figures)}))


if __name__ == "__main__":
    main()
