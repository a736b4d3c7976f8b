"""Load and fault scenarios of docs/robustness.md against a real server process; prints
the "Figures to report" table (markdown).

    python bench/robustness.py                 # quick: a few minutes
    python bench/robustness.py --full          # the checklist's sizes (5,000 polls, 60 s)
    python bench/robustness.py --soak 3600     # the hour-long churn soak (item 50)
    python bench/robustness.py --write docs/robustness.md   # also replace the figures there

The server is bench/robustness_server.py in its own process (RSS and descriptors
read with psutil); every attack runs while a probe session echoes (I1/I2), and
timing figures live here, never in the tests. Attack inputs are the ones the
test suite uses (tests/robustness/*).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import psutil  # noqa: E402

import bullet_py  # noqa: E402
from bullet_py.codec import bert  # noqa: E402
from bullet_py.codec.terms import Atom  # noqa: E402
from bullet_py.exceptions import DecodeError  # noqa: E402
from tests.helpers import POLL_HEADERS, POST_HEADERS, SSE_HEADERS  # noqa: E402
from tests.robustness.ledger import Ledger, Report  # noqa: E402
from tests.robustness.proxy import DOWN, FaultProxy, Plan  # noqa: E402
from tests.robustness.raw import (  # noqa: E402
    OP_TEXT,
    RawConnection,
    RawWebSocket,
    http_request,
    ws_frame,
)

MB = 1 << 20
CRASH_WORDS = ("Traceback", "RecursionError", "MemoryError", "zlib.error", "KeyError", "IndexError")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Server:
    """bench/robustness_server.py in a process of its own."""

    def __init__(self, *args: str, pure_python_parser: bool = False) -> None:
        self.port = free_port()
        self.args = args
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if pure_python_parser:
            self.env["AIOHTTP_NO_EXTENSIONS"] = "1"
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int | None = None) -> None:
        self.port = port or self.port
        cmd = [
            sys.executable,
            str(ROOT / "bench" / "robustness_server.py"),
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - started once, returns at once
            [*cmd, *self.args], stdout=self.log, stderr=subprocess.STDOUT, env=self.env, text=True
        )
        self.ps = psutil.Process(self.proc.pid)
        for _ in range(300):
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("server did not start")

    def rss(self) -> float:
        return self.ps.memory_info().rss / MB

    def fds(self) -> int:
        return self.ps.num_fds()

    async def stats(self, trim: bool = False) -> dict[str, Any]:
        url = self.base + "/stats" + ("?trim=1" if trim else "")
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return dict(await r.json())

    async def sessions(self) -> int:
        st = await self.stats()
        return int(st["bullet"]["sessions"] + st["stream"]["sessions"])

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float]:
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(sig)
        code = await asyncio.to_thread(self.proc.wait, timeout)
        return code, time.monotonic() - began

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def crashes(self) -> Counter[str]:
        text = self.output()
        return Counter(w for w in CRASH_WORDS for _ in re.finditer(re.escape(w), text))


@dataclass
class Row:
    """One scenario's figures."""

    name: str
    items: str
    inputs: int = 0
    codes: Counter[Any] = field(default_factory=Counter)
    rtts: list[float] = field(default_factory=list)
    rss: tuple[float, float, float] = (0.0, 0.0, 0.0)  # start, peak, end (MB)
    fds: tuple[int, int, int] = (0, 0, 0)
    sessions: tuple[int, int, int] = (0, 0, 0)
    tasks: tuple[int, int, int] = (0, 0, 0)
    ledger: Report = field(default_factory=Report)
    hangs: int = 0
    crashes: int = 0
    notes: str = ""


class Watch:
    """Probe RTTs and resource peaks while an attack runs."""

    def __init__(self, server: Server, row: Row) -> None:
        self.server, self.row = server, row
        self.stop = asyncio.Event()
        self.peak_rss = 0.0
        self.peak_fds = 0
        self.peak_sessions = 0
        self.peak_tasks = 0

    async def __aenter__(self) -> Watch:
        fds = self.server.fds()  # before our own /stats connection opens
        st = await self.server.stats(trim=True)
        self.start = (self.server.rss(), fds, await self.server.sessions(), st["tasks"])
        self.task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(self.server.base + "/bullet", heartbeat=None)
            ledger, n = Ledger(), 0
            while not self.stop.is_set():
                m = ledger.stamp("probe")
                began = time.perf_counter()
                await ws.send_str(m)
                while True:
                    msg = await ws.receive(timeout=30)
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        self.row.crashes += 1  # the probe lost its socket: I1 broken
                        return
                    if msg.data == m:
                        break
                self.row.rtts.append(time.perf_counter() - began)
                n += 1
                if n % 10 == 0:
                    self.peak_rss = max(self.peak_rss, self.server.rss())
                    self.peak_fds = max(self.peak_fds, self.server.fds())
                await asyncio.sleep(0.02)
            await ws.close()

    async def sample(self) -> None:
        st = await self.server.stats()
        self.peak_rss = max(self.peak_rss, self.server.rss())
        self.peak_fds = max(self.peak_fds, self.server.fds())
        self.peak_sessions = max(
            self.peak_sessions, st["bullet"]["sessions"] + st["stream"]["sessions"]
        )
        self.peak_tasks = max(self.peak_tasks, st["tasks"])

    async def __aexit__(self, *exc: object) -> None:
        await self.sample()
        self.stop.set()
        await self.task
        # The attacker has left: wait (bounded) for sessions and descriptors to settle.
        for _ in range(150):
            fds = self.server.fds()
            if fds <= self.start[1] and await self.server.sessions() <= self.start[2]:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.2)  # let the server close our last /stats connection
        fds = self.server.fds()
        st = await self.server.stats(trim=True)
        end = (self.server.rss(), fds, await self.server.sessions(), st["tasks"])
        r = self.row
        r.rss = (self.start[0], max(self.peak_rss, end[0]), end[0])
        r.fds = (self.start[1], max(self.peak_fds, end[1]), end[1])
        r.sessions = (self.start[2], max(self.peak_sessions, end[2]), end[2])
        r.tasks = (self.start[3], max(self.peak_tasks, end[3]), end[3])


# --- scenarios ---------------------------------------------------------------------------


async def healthy_throughput(
    server: Server, row: Row, clients: int, per: int
) -> tuple[float, float, float]:
    """Echo round trips on ``clients`` WebSockets: (messages/s, p50 ms, p99 ms)."""
    lat: list[float] = []

    async def one(s: aiohttp.ClientSession, i: int) -> None:
        async with s.ws_connect(server.base + "/bullet", heartbeat=None) as ws:
            ledger = Ledger()
            for _ in range(per):
                m = ledger.stamp(f"h{i}")
                began = time.perf_counter()
                await ws.send_str(m)
                ledger.delivered((await ws.receive(timeout=30)).data)
                lat.append(time.perf_counter() - began)
            row.ledger += ledger.report()

    began = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        await asyncio.gather(*(one(s, i) for i in range(clients)))
    spent = time.perf_counter() - began
    return clients * per / spent, pct(lat, 50) * 1000, pct(lat, 99) * 1000


async def s_baseline(server: Server, size: dict[str, int]) -> Row:
    row = Row("baseline (no attack)", "-")
    async with Watch(server, row):
        rate, p50, p99 = await healthy_throughput(server, row, 20, size["echo"])
    row.notes = f"{rate:.0f} msg/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms (20 sockets)"
    row.codes["echo ok"] = row.ledger.delivered
    return row


async def s_malformed(server: Server, size: dict[str, int]) -> Row:
    from tests.robustness.test_a_malformed_bert import CASES

    row = Row("A malformed BERT, WS + POST", "1-17")
    slowest = 0.0
    for _, text, _, _ in CASES:  # decode time in this process, the server's code
        began = time.perf_counter()
        with contextlib.suppress(DecodeError):
            bert.decode(text)
        spent = time.perf_counter() - began
        slowest = max(slowest, spent)
        row.hangs += spent > 0.1
    async with Watch(server, row), aiohttp.ClientSession() as s:
        url = server.base + "/stream"
        async with s.ws_connect(url, max_msg_size=0) as ws:
            for _, text, _, _ in CASES:
                await ws.send_str(text)
                reply = bert.decode(await ws.receive_str(timeout=30))
                row.codes[f"ws {{error,{reply[1]}}}"] += 1
                row.inputs += 1
        for _, text, _, _ in CASES:
            body = io.BytesIO(text.encode("utf-8"))
            async with s.post(url, data=body, headers=POST_HEADERS) as r:
                reply = bert.decode(await r.text())
                row.codes[f"post {r.status} {{error,{reply[1]}}}"] += 1
                row.inputs += 1
    row.notes = f"slowest decode {slowest * 1000:.2f} ms"
    return row


async def s_text(server: Server, size: dict[str, int]) -> Row:
    row = Row("B invalid UTF-8 / binary frames", "23-25")
    async with Watch(server, row):
        for bad in (b"\xff", b"\xc0\x80", b"\xed\xa0\x80"):
            ws = await RawWebSocket.connect(server.port)
            await ws.send_frame(OP_TEXT, b"ok" + bad)
            row.codes[f"close {await ws.close_code()}"] += 1
            row.inputs += 1
            await ws.close()
        conn = await RawConnection.open(server.port)
        head, _ = await conn.request(http_request("POST", headers=POST_HEADERS, body=b"\x83\xff"))
        row.codes[f"post {head.status}"] += 1
        row.inputs += 1
        await conn.close()
    return row


async def s_oversize(server: Server, size: dict[str, int]) -> Row:
    from tests.robustness.test_c_oversize import deflate_bomb
    from tests.robustness.test_g_methods_headers import LIMITS

    row = Row("C oversize frames and bodies", "29-34")
    gzip, zlb = deflate_bomb(size["bomb"], 31), deflate_bomb(size["bomb"], 15)
    async with Watch(server, row):
        for frame in (
            ws_frame(OP_TEXT, b"x" * 64, declared=8 * MB)[:80],
            ws_frame(OP_TEXT, b"", declared=2**63 - 1) + b"x",
            ws_frame(OP_TEXT, deflate_bomb(200 * MB, -15)[:20_000], rsv1=True),
        ):
            ws = await RawWebSocket.connect(
                server.port, extra={"Sec-WebSocket-Extensions": "permessage-deflate"}
            )
            await ws.conn.send(frame)
            row.codes[f"close {await ws.close_code()}"] += 1
            row.inputs += 1
            await ws.close()
        requests = [
            http_request("POST", headers={**POST_HEADERS, "Content-Length": "1073741824"}),
            http_request("POST", headers={**POST_HEADERS, "Content-Encoding": "gzip"}, body=gzip),
            http_request("POST", headers={**POST_HEADERS, "Content-Encoding": "deflate"}, body=zlb),
            *LIMITS.values(),
        ]  # fmt: skip
        for req in requests:
            conn = await RawConnection.open(server.port)
            await conn.send(req)
            head = await conn.read_head()
            row.codes[f"http {head.status}"] += 1
            row.inputs += 1
            await conn.close()
    return row


async def push_latency(server: Server, readers: int, rounds: int) -> list[float]:
    """Broadcast ``rounds`` 1 KB pushes, 10 ms apart; delivery latency on ``readers`` sockets."""
    lat: list[float] = []
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession() as s:
        sockets = [
            await s.ws_connect(server.base + "/bullet", heartbeat=None) for _ in range(readers)
        ]

        async def read(ws: Any) -> None:
            got = 0
            while got < rounds:
                msg = await ws.receive(timeout=60)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    return
                key = msg.data[:12]
                if key in sent:
                    lat.append(time.perf_counter() - sent[key])
                    got += 1

        tasks = [asyncio.ensure_future(read(w)) for w in sockets]
        for i in range(rounds):
            key = f"{i:012d}"
            sent[key] = time.perf_counter()
            async with s.post(server.base + f"/push?n=1&size=1&text={key}{'x' * 1012}") as r:
                await r.read()
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        for w in sockets:
            await w.close()
    return lat


async def s_slow_consumers(server: Server, size: dict[str, int]) -> Row:
    row = Row("E slow consumers (WS + SSE never read)", "43-44")
    healthy, rounds = size["healthy"], size["rounds"]
    base = await push_latency(server, healthy, rounds)
    async with Watch(server, row) as watch:
        slow = []
        for _ in range(10):
            ws = await RawWebSocket.connect(server.port, rcvbuf=4096)
            ws.conn.stop_reading()
            slow.append(ws.conn)
            c = await RawConnection.open(server.port, rcvbuf=4096)
            await c.send(http_request("GET", headers=SSE_HEADERS))
            c.stop_reading()
            slow.append(c)
        row.inputs = len(slow)
        attacked = await push_latency(server, healthy, rounds)
        await watch.sample()
        ended = sum([await c.closed_by_peer(30) for c in slow])
        row.codes["slow clients cut"] = ended
        for c in slow:
            await c.close()
    row.notes = (
        f"healthy p99 delivery {pct(base, 99) * 1000:.1f} ms alone, "
        f"{pct(attacked, 99) * 1000:.1f} ms with 20 slow readers ({healthy} healthy)"
    )
    row.codes["pushes delivered"] = len(attacked)
    return row


async def s_post_flood(server: Server, size: dict[str, int]) -> Row:
    row = Row("E POST flood, one session", "47")
    async with Watch(server, row), aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        url = server.base + "/bullet"
        async with s.get(url, headers=POLL_HEADERS) as r:
            sid = r.cookies["bullet_sid"].value
        headers = {**POST_HEADERS, "Cookie": f"bullet_sid={sid}"}
        until = time.monotonic() + size["flood_s"]

        async def worker() -> None:
            while time.monotonic() < until:
                async with s.post(url, data=b"flood", headers=headers) as r:
                    row.codes[f"http {r.status}"] += 1
                    row.inputs += 1

        await asyncio.gather(*(worker() for _ in range(16)))
    row.notes = f"{row.inputs / size['flood_s']:.0f} POST/s offered"
    return row


async def s_parked_polls(server: Server, size: dict[str, int], timeout: float) -> Row:
    n = size["polls"]
    row = Row(f"E {n} parked polls + 30% CPU load", "45, 74")
    late: list[float] = []
    async with Watch(server, row) as watch:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        ) as s:
            url = server.base + "/bullet"
            cookies = []
            for start in range(0, n, 250):

                async def first() -> str:
                    async with s.get(url, headers=POLL_HEADERS) as r:
                        return r.cookies["bullet_sid"].value

                cookies += await asyncio.gather(*(first() for _ in range(min(250, n - start))))
            rss0 = server.rss()

            async def park(sid: str) -> None:
                began = time.monotonic()
                async with s.get(url, headers={**POLL_HEADERS, "Cookie": f"bullet_sid={sid}"}) as r:
                    row.codes[f"http {r.status}"] += 1
                late.append(time.monotonic() - began - timeout)

            stop = asyncio.Event()

            async def burn() -> None:
                async with s.ws_connect(server.base + "/stream") as ws:
                    msg = bert.encode((Atom("burn"), 1))
                    while not stop.is_set():
                        await ws.send_str(msg)
                        await asyncio.sleep(0.007)

            burner = asyncio.ensure_future(burn())
            polls = [asyncio.ensure_future(park(sid)) for sid in cookies]
            for _ in range(600):
                st = await server.stats()
                if st["parked"] >= n:
                    break
                await asyncio.sleep(0.1)
            await watch.sample()
            per_poll = (server.rss() - rss0) * MB / n
            await asyncio.gather(*polls)
            stop.set()
            await burner
            row.inputs = n
    row.notes = (
        f"204 at timeout+{pct(late, 50) * 1000:.0f} ms p50, +{pct(late, 99) * 1000:.0f} ms p99, "
        f"+{max(late) * 1000:.0f} ms max (timeout {timeout:g} s); "
        f"{per_poll / 1024:.1f} KB RSS per parked poll"
    )
    return row


async def s_pipelined(server: Server, size: dict[str, int]) -> Row:
    row = Row("E 10,000 pipelined GETs, one connection", "51")
    async with Watch(server, row):
        conn = await RawConnection.open(server.port)
        one = http_request("GET", headers=POLL_HEADERS)
        writer = asyncio.ensure_future(conn.send(one * 10_000))
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            for _ in range(10_000):
                head = await conn.read_head(timeout=60)
                await conn.read_body(head)
                row.codes[f"http {head.status}"] += 1
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer
        await conn.close()
        row.inputs = 10_000
    return row


async def s_churn(server: Server, size: dict[str, int]) -> Row:
    seconds = size["churn_s"]
    row = Row(f"E churn: 50 sessions/s for {seconds} s", "50")
    ledger = Ledger()
    samples: list[tuple[float, float]] = []
    before = (await server.stats())["closed"]
    async with Watch(server, row), aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        url = server.base + "/bullet"

        async def one(i: int) -> None:
            m = ledger.stamp(f"c{i}") if i % 3 != 2 else ""
            if i % 3 == 0:
                async with s.ws_connect(url) as ws:
                    await ws.send_str(m)
                    ledger.delivered((await ws.receive(timeout=30)).data)
            elif i % 3 == 1:
                async with s.get(url, headers=POLL_HEADERS) as r:
                    cookie = {"Cookie": f"bullet_sid={r.cookies['bullet_sid'].value}"}
                async with s.post(url, data=m.encode(), headers={**POST_HEADERS, **cookie}) as r:
                    ledger.delivered(await r.text())
            else:
                async with s.get(url, headers=SSE_HEADERS) as r:
                    row.codes[f"sse {r.status}"] += 1

        started, i, pending = time.monotonic(), 0, set()
        while time.monotonic() - started < seconds:
            for _ in range(5):
                pending.add(asyncio.ensure_future(one(i)))
                i += 1
            await asyncio.sleep(0.1)
            if i % 500 == 0:
                samples.append((time.monotonic() - started, server.rss()))
            pending = {t for t in pending if not t.done()}
        await asyncio.gather(*pending)
        row.inputs = i
    row.ledger = ledger.report()
    for _ in range(100):
        st = await server.stats()
        if st["bullet"]["sessions"] == 0 and st["bullet"]["pending"] == 0:
            break
        await asyncio.sleep(0.2)
    st = await server.stats()
    opened = st["bullet"]["opened"]
    row.codes["on_close = opened"] = int(st["closed"] - before <= opened)
    slope = 0.0
    warm = samples[len(samples) // 4 :]
    if len(warm) >= 2:
        slope = (warm[-1][1] - warm[0][1]) / max(1e-9, warm[-1][0] - warm[0][0]) * 600
    row.notes = (
        f"RSS slope after warm-up {slope:+.2f} MB/10 min; sessions at end "
        f"{st['bullet']['sessions']}, pending {st['bullet']['pending']}"
    )
    return row


async def s_guessing(server: Server, size: dict[str, int]) -> Row:
    import secrets

    n = size["guesses"]
    row = Row(f"F {n} guessed session ids", "56-57")
    async with Watch(server, row):
        conn = await RawConnection.open(server.port)
        reqs = b"".join(
            http_request(
                "GET", headers={**POLL_HEADERS, "Cookie": f"bullet_sid={secrets.token_urlsafe(24)}"}
            )
            for _ in range(n)
        )
        writer = asyncio.ensure_future(conn.send(reqs))
        for _ in range(n):
            head = await conn.read_head(timeout=60)
            await conn.read_body(head)
            row.codes[
                f"http {head.status} new cookie"
                if head.get("set-cookie")
                else f"http {head.status}"
            ] += 1
        await writer
        await conn.close()
        row.inputs = n
    return row


async def s_methods(server: Server, label: str) -> Row:
    from tests.robustness.test_g_methods_headers import SMUGGLING

    row = Row(f"G methods, upgrades, smuggling ({label})", "60-66")
    requests = [
        http_request(m) for m in ("PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "HEAD")
    ]
    requests += [
        http_request("GET", headers={"Upgrade": u, "Connection": "Upgrade"})
        for u in ("h2c", "foo", "websocket, foo", "")
    ]
    requests += list(SMUGGLING.values())
    async with Watch(server, row):
        for req in requests:
            conn = await RawConnection.open(server.port)
            head, _ = await conn.request(req)
            row.codes[f"http {head.status}"] += 1
            row.inputs += 1
            await conn.close()
    return row


async def s_lossy_link(size: dict[str, int]) -> Row:
    """Item 73's closest version, in this process (so the server's writes can be seen):
    a proxy adds latency and cuts ~30% of the polling connections at a random byte."""
    import random

    from bullet_py.web import polling
    from tests.robustness.apps import echo_app, served

    row = Row("H lossy link (proxy), polling sessions", "67, 73")
    sessions, per = size["lossy_sessions"], size["lossy_messages"]
    app, srv = echo_app(poll_timeout=2, session_idle_timeout=60, outbox_max_messages=10_000)
    rng = random.Random(73)
    ledger = Ledger()
    written: Counter[str] = Counter()
    real = polling.xhr_body
    polling.xhr_body = lambda m: (written.update([m]), real(m))[1]  # type: ignore[assignment]
    try:
        async with served(app, srv) as port, FaultProxy(port) as proxy:
            proxy.plan_for = lambda i: (
                Plan(cut_after={DOWN: rng.randint(1, 400)}, delay=0.002)
                if rng.random() < 0.3
                else Plan(delay=0.002)
            )
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
                conns, cookies = [], []
                for _ in range(sessions):
                    async with s.get(srv.url, headers=POLL_HEADERS) as r:
                        sid = r.cookies["bullet_sid"].value
                    c = {"Cookie": f"bullet_sid={sid}"}
                    async with s.post(srv.url, data=b"noreply", headers={**POST_HEADERS, **c}):
                        pass
                    cookies.append(c)
                    conns.append(srv.endpoint.registry.get(sid))
                for i, conn in enumerate(conns):
                    for _ in range(per):
                        conn.send(ledger.stamp(f"s{i}"))

                def window(i: int, seq: int) -> bool:
                    m = f"L|s{i}|{seq}|"
                    return written[m] > 0 and m not in conns[i].outbox

                async def client(i: int) -> None:
                    for _ in range(per * 20):
                        if not conns[i].outbox and all(
                            window(i, q) for q in ledger.missing(f"s{i}")
                        ):
                            return
                        try:
                            async with s.get(
                                proxy.url, headers={**POLL_HEADERS, **cookies[i]}
                            ) as r:
                                body = await r.text()
                                row.codes[f"poll {r.status}"] += 1
                                if r.status == 200:
                                    ledger.delivered(body)
                        except (aiohttp.ClientError, ConnectionError):
                            ledger.fault(f"s{i}")
                            row.codes["poll cut"] += 1

                await asyncio.gather(*(client(i) for i in range(sessions)))
                for i in range(sessions):
                    for q in ledger.missing(f"s{i}"):
                        if window(i, q):
                            ledger.allow(f"s{i}", q)
            row.inputs = len(proxy.conns)
    finally:
        polling.xhr_body = real  # type: ignore[assignment]
    row.ledger = ledger.report()
    row.notes = "bytes the server wrote in full into a link that then died count as the window"
    return row


async def s_shutdown(size: dict[str, int], sig: int) -> Row:
    n = size["shutdown_clients"]
    name = "SIGTERM" if sig == signal.SIGTERM else "SIGKILL + restart"
    row = Row(f"H {name} with {n} clients", "70" if sig == signal.SIGTERM else "71")
    server = Server("--poll-timeout", "60")
    await server.start()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as s:
        url = server.base + "/bullet"
        third = n // 3
        sockets = [await s.ws_connect(url, heartbeat=None) for _ in range(third)]
        streams = [await s.get(url, headers=SSE_HEADERS) for _ in range(third)]
        cookies = []
        for _ in range(n - 2 * third):
            async with s.get(url, headers=POLL_HEADERS) as r:
                cookies.append(r.cookies["bullet_sid"].value)

        async def park(sid: str) -> None:
            try:
                async with s.get(url, headers={**POLL_HEADERS, "Cookie": f"bullet_sid={sid}"}) as r:
                    row.codes[f"poll {r.status}"] += 1
            except aiohttp.ClientError:
                row.codes["poll dropped"] += 1

        polls = [asyncio.ensure_future(park(c)) for c in cookies]
        for _ in range(300):
            if (await server.stats())["parked"] >= len(cookies):
                break
            await asyncio.sleep(0.1)
        code, took = await server.stop(sig)
        await asyncio.gather(*polls)
        for ws in sockets:
            msg = await ws.receive(timeout=30)
            row.codes[
                f"ws close {msg.data if msg.type is aiohttp.WSMsgType.CLOSE else msg.type.name}"
            ] += 1
        for st in streams:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(st.content.read(), 30)
            row.codes["stream ended"] += 1
            st.close()
        row.inputs = n
        crashes = server.crashes()
        row.crashes = sum(crashes.values()) + (code not in (0, -signal.SIGKILL))
        # Restart at once on the same port; stale cookies are no error.
        began = time.monotonic()
        again = Server("--poll-timeout", "60")
        await again.start(port=server.port)
        rebind = time.monotonic() - began
        back = 0
        for sid in cookies[:50]:
            for attempt in (1, 2):
                async with s.get(url, headers={**POLL_HEADERS, "Cookie": f"bullet_sid={sid}"}) as r:
                    if r.status == 204:
                        back += attempt <= 2
                        break
        code2, _ = await again.stop()
        row.crashes += sum(again.crashes().values()) + (code2 != 0)
    row.notes = (
        f"exit code {code} after {took:.2f} s; rebound in {rebind:.2f} s; "
        f"{back}/50 pollers back within 2 tries"
    )
    return row


# --- output ---------------------------------------------------------------------------


def fmt_codes(c: Counter[Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items(), key=str)) or "-"


def environment() -> str:
    import aiohttp.http_parser as hp

    parser = "C (llhttp)" if hp.HttpRequestParser is not hp.HttpRequestParserPy else "pure Python"
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__} (parser {parser}; "
        f"G also run with AIOHTTP_NO_EXTENSIONS=1), bullet_py {bullet_py.__version__} with its own "
        f"BERT decoder (bullet_py.codec.bert), {os.cpu_count()} CPUs, ulimit -n {soft}, "
        f"{platform.system()} {platform.release()}"
    )


def fuzz_figures(seconds: int) -> str:
    """Run the atheris target for ``seconds``; its executions, corpus and coverage."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "atheris not installed (pip install -e '.[fuzz]')"
    with tempfile.TemporaryDirectory() as corpus:
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "fuzz_decoder.py"),
             f"-max_total_time={seconds}", corpus],
            capture_output=True, text=True, timeout=seconds + 120,
        )  # fmt: skip
        last = [line for line in done.stderr.splitlines() if "DONE" in line or "pulse" in line]
        crashed = done.returncode != 0
        files = len(os.listdir(corpus))
    m = re.search(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)", last[-1] if last else "")
    if not m:
        return f"atheris run failed (exit {done.returncode})"
    return (
        f"{int(m.group(1)):,} executions in {seconds} s, corpus {files} inputs, "
        f"{m.group(2)} coverage edges / {m.group(3)} features, "
        f"{'CRASH found' if crashed else '0 crashes, 0 over 100 ms'}"
    )


HEADER = (
    "| Scenario | Items | Inputs | Codes | RSS MB start/peak/end | FDs start/peak/end "
    "| Sessions start/peak/end | Probe RTT p50/p99 ms | Ledger s/d/r/dup/lost/order | Notes |"
)


def render(rows: list[Row], fuzz: str, started: float) -> str:
    crashes = sum(r.crashes for r in rows)
    hangs = sum(r.hangs for r in rows)
    rtts = [x for r in rows for x in r.rtts]
    ledger = Report()
    for r in rows:
        ledger += r.ledger
    groups: Counter[str] = Counter()
    for r in rows:
        groups[r.name.split()[0]] += r.inputs
    watched = [r for r in rows if r.rss[0]]
    worst = max(watched, key=lambda r: r.rss[1] - r.rss[0])
    residual = max((r.rss[2] - r.rss[0]) / r.rss[0] * 100 for r in watched)
    repeats = [r for r in watched if "again" in r.name]
    plateau = ", ".join(
        f"{r.name.split(',')[0]} residual {r.rss[2] - r.rss[0]:+.1f} MB" for r in repeats
    )
    back = sum(1 for r in rows if r.fds[2] <= r.fds[0] and r.sessions[2] <= r.sessions[0])
    tried = ", ".join(f"{g}: {n:,}" for g, n in sorted(groups.items()) if g != "baseline")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    figures = [
        ("Bad inputs tried", f"{tried}; fuzz: {fuzz}"),
        (
            "Crashes",
            f"**{crashes}** (tracebacks; RecursionError, MemoryError, zlib.error, KeyError, "
            "IndexError in the server's output; unexpected exits; probe sockets lost)",
        ),
        ("Hangs", f"**{hangs}** (decodes over 100 ms; slow handlers are answered `timeout`)"),
        (
            "Max RSS growth",
            f"peak +{worst.rss[1] - worst.rss[0]:.1f} MB ({worst.name}); worst residual after "
            f"the attacker left {residual:+.1f}% of baseline (after gc + malloc_trim; CPython "
            f"keeps partly used arenas, so compare the repeated pass: {plateau})",
        ),
        (
            "Event-loop lag",
            f"probe echo RTT p50 {pct(rtts, 50) * 1000:.1f} ms, p99 {pct(rtts, 99) * 1000:.1f} ms"
            " over all attacks (per scenario below)",
        ),
        (
            "Messages",
            f"sent / delivered / re-delivered / duplicates / **lost** / order violations: "
            f"{ledger.row()} (+{ledger.dropped} in the documented kernel-buffer window)",
        ),
        ("Status and close codes", "per scenario below"),
        (
            "Resources",
            f"descriptors and sessions back to their start in {back}/{len(rows)} scenarios "
            "(start/peak/end below)",
        ),
        ("Throughput", f"{rows[0].notes}; with slow consumers: see E"),
        ("Environment", environment()),
    ]
    out = [
        f"Run of `python bench/robustness.py` on {when}, {time.monotonic() - started:.0f} s.",
        "",
        "| Figure | Value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in figures),
        "",
        HEADER,
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rss = "/".join(f"{x:.0f}" for x in r.rss)
        fds = "/".join(map(str, r.fds))
        sessions = "/".join(map(str, r.sessions))
        rtt = f"{pct(r.rtts, 50) * 1000:.1f}/{pct(r.rtts, 99) * 1000:.1f}"
        out.append(
            f"| {r.name} | {r.items} | {r.inputs:,} | {fmt_codes(r.codes)} | {rss} | {fds} | "
            f"{sessions} | {rtt} | {r.ledger.row()} | {r.notes} |"
        )
    return "\n".join(out) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="the checklist's sizes")
    parser.add_argument("--soak", type=int, default=None, help="churn seconds (item 50)")
    parser.add_argument("--fuzz", type=int, default=60, help="atheris seconds (0: skip)")
    parser.add_argument("--write", type=Path, default=None, help="replace the figures in this file")
    args = parser.parse_args()
    size = {
        "echo": 500, "healthy": 50, "rounds": 200, "flood_s": 5, "polls": 1000, "poll_timeout": 10,
        "churn_s": 60, "guesses": 20_000, "bomb": 256 * MB,
        "lossy_sessions": 20, "lossy_messages": 20,
        "shutdown_clients": 300,
    }  # fmt: skip
    if args.full:
        size.update(polls=5000, poll_timeout=60, healthy=100, guesses=100_000, bomb=1024 * MB,
                    flood_s=30, churn_s=300, shutdown_clients=1000, lossy_sessions=100)  # fmt: skip
    if args.soak:
        size["churn_s"] = args.soak
    started = time.monotonic()
    rows: list[Row] = []
    server = Server("--no-rate-limit", "--poll-timeout", str(size["poll_timeout"]), "--idle", "2")
    await server.start()
    try:
        for scenario in (
            s_baseline,
            s_malformed,
            s_text,
            s_oversize,
            s_slow_consumers,
            s_pipelined,
            s_guessing,
            s_churn,
        ):
            print(f"... {scenario.__name__}", file=sys.stderr)
            rows.append(await scenario(server, size))
        print("... s_parked_polls", file=sys.stderr)
        rows.append(await s_parked_polls(server, size, size["poll_timeout"]))
        again = await s_parked_polls(server, size, size["poll_timeout"])
        again.name += ", again (plateau)"
        rows.append(again)
        print("... s_methods", file=sys.stderr)
        rows.append(await s_methods(server, "C parser"))
    finally:
        code, _ = await server.stop()
    crashes = server.crashes()
    rows[0].crashes += sum(crashes.values()) + (code != 0)
    limited = Server("--poll-timeout", "10")
    await limited.start()
    try:
        print("... s_post_flood", file=sys.stderr)
        rows.append(await s_post_flood(limited, size))
    finally:
        code, _ = await limited.stop()
    rows[-1].crashes += sum(limited.crashes().values()) + (code != 0)
    pure = Server(pure_python_parser=True)
    await pure.start()
    try:
        print("... s_methods (pure Python parser)", file=sys.stderr)
        rows.append(await s_methods(pure, "pure-Python parser"))
    finally:
        code, _ = await pure.stop()
    rows[-1].crashes += sum(pure.crashes().values()) + (code != 0)
    print("... s_lossy_link", file=sys.stderr)
    rows.append(await s_lossy_link(size))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        print(f"... s_shutdown {sig!r}", file=sys.stderr)
        rows.append(await s_shutdown(size, sig))
    fuzz = fuzz_figures(args.fuzz) if args.fuzz else "skipped"
    table = render(rows, fuzz, started)
    print(table)
    if args.write is not None:
        text = args.write.read_text()
        begin, end = "<!-- figures:begin -->", "<!-- figures:end -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            args.write.write_text(f"{head}{begin}\n{table}{end}{tail}")
        else:
            args.write.write_text(text + f"\n{begin}\n{table}{end}\n")


if __name__ == "__main__":
    asyncio.run(main())
