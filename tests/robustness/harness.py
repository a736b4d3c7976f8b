"""The invariants every robustness item checks (docs/robustness.md I1-I5), as helpers.

- I1 up / I2 isolated: a :class:`Probe` session keeps echoing, in order, while
  an attack runs (its round-trip times are recorded for the bench, never
  asserted: the CI machine is shared and noisy).
- I3 bounded: :class:`Baseline` records descriptors, sessions, pending ids and
  tasks, then waits (bounded) until they are back; :func:`traced_growth`
  measures Python allocations with tracemalloc against a budget.
- I4 clear: :class:`LogCheck` counts the structured WARNING lines and fails on
  a traceback logged for a client fault.
- I5 nothing lost: :class:`tests.robustness.ledger.Ledger`, and close callbacks
  counted with :func:`tests.helpers.closes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil
import pytest

from bullet_py.codec.bert import decode, encode
from bullet_py.codec.terms import Atom
from bullet_py.web.endpoint import BulletEndpoint
from tests.helpers import wait_for
from tests.robustness.ledger import Ledger

EVENT = re.compile(r"event=(\w+)")


@dataclass
class Snapshot:
    fds: int
    sessions: int
    pending: int
    tasks: int


def snapshot(endpoint: BulletEndpoint | None) -> Snapshot:
    return Snapshot(
        fds=psutil.Process().num_fds(),
        sessions=len(endpoint.registry) if endpoint else 0,
        pending=endpoint.registry.pending_count if endpoint else 0,
        tasks=len(asyncio.all_tasks()),
    )


class Baseline:
    """Resources before an attack; :meth:`back` waits until they return (I3)."""

    def __init__(self, endpoint: BulletEndpoint | None) -> None:
        self.endpoint = endpoint
        self.start = snapshot(endpoint)
        self.peak = self.start

    def sample(self) -> Snapshot:
        now = snapshot(self.endpoint)
        self.peak = Snapshot(
            *(max(a, b) for a, b in zip(vars(self.peak).values(), vars(now).values(), strict=True))
        )
        return now

    async def back(self, timeout: float = 15.0, *, pending: bool = False) -> Snapshot:
        """Wait until descriptors, sessions and tasks are at (or below) the start."""

        def done() -> bool:
            now = self.sample()
            ok = (
                now.fds <= self.start.fds
                and now.sessions <= self.start.sessions
                and now.tasks <= self.start.tasks
            )
            return ok and (not pending or now.pending <= self.start.pending)

        try:
            await wait_for(done, timeout)
        except AssertionError:
            raise AssertionError(
                f"resources not back: start {self.start}, now {self.sample()}"
            ) from None
        return self.sample()


@contextlib.contextmanager
def traced_growth(budget_bytes: int) -> Iterator[dict[str, int]]:
    """Fail if Python allocations still held at the end grew more than ``budget_bytes``.

    The peak is reported in the yielded dict (``peak``, ``growth``) for figures.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    out: dict[str, int] = {}
    try:
        yield out
        now, peak = tracemalloc.get_traced_memory()
        out["growth"] = now - before
        out["peak"] = peak - before
        assert out["growth"] <= budget_bytes, f"memory grew {out['growth']} B > {budget_bytes} B"
    finally:
        if started:
            tracemalloc.stop()


_SERVER_CODE = (
    "/bullet_py/",
    "/aiohttp/web_",
    "/aiohttp/http_",
    "/aiohttp/_http_",
    "/aiohttp/base_protocol",
    "/aiohttp/streams",
    "/aiohttp/_websocket/",
)
_CLIENT_CODE = ("/aiohttp/client", "/aiohttp/connector", "/tests/")


def server_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes held by allocations made on the server's side of an in-process test.

    A trace counts when its traceback passes through bullet_py or aiohttp's
    server half and not through aiohttp's client or the test itself.
    """
    kinds: dict[str, int] = {}  # filename -> 1 server, 2 client, 0 neither

    def kind(filename: str) -> int:
        k = kinds.get(filename)
        if k is None:
            if any(c in filename for c in _CLIENT_CODE):
                k = 2
            elif any(c in filename for c in _SERVER_CODE):
                k = 1
            else:
                k = 0
            kinds[filename] = k
        return k

    total = 0
    for trace in snapshot.traces._traces:  # (domain, size, frames, ...) tuples
        size, frames = trace[1], trace[2]
        seen = 0
        for frame in frames:
            seen |= kind(frame[0])
            if seen & 2:
                break
        if seen == 1:
            total += size
    return total


class ServerMemory:
    """tracemalloc measuring only the server's allocations.

    ``frames`` deep tracebacks attribute allocations made in the standard library
    on the server's behalf too; ``frames=1`` (allocation sites only) is much
    cheaper, for long runs.
    """

    def __init__(self, frames: int = 16) -> None:
        self.frames = frames

    def __enter__(self) -> ServerMemory:
        self._started = not tracemalloc.is_tracing()
        if self._started:
            tracemalloc.start(self.frames)
        self.before = self.now()
        return self

    def now(self) -> int:
        return server_bytes(tracemalloc.take_snapshot())

    def growth(self) -> int:
        return self.now() - self.before

    def __exit__(self, *exc: object) -> None:
        if self._started:
            tracemalloc.stop()


def shrink_send_buffer(conn: Any, size: int = 4096) -> None:
    """Make the server's socket of a session a small one, so a reader that stops
    reading stalls its writes at once (the kernel would otherwise take megabytes)."""
    transport = conn.request.transport
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


class LogCheck:
    """Reads caplog: structured event lines, and no traceback for client faults (I4)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        caplog.set_level(logging.INFO, logger="bullet_py")

    def events(self, level: int = logging.WARNING) -> list[str]:
        out = []
        for rec in self.caplog.records:
            if rec.name == "bullet_py" and rec.levelno == level:
                m = EVENT.search(rec.getMessage())
                if m:
                    out.append(m.group(1))
        return out

    def count(self, event: str, level: int = logging.WARNING) -> int:
        return self.events(level).count(event)

    def lines(self, event: str) -> list[str]:
        return [
            r.getMessage() for r in self.caplog.records if f"event={event} " in r.getMessage() + " "
        ]

    def assert_no_traceback(self) -> None:
        bad = [
            r
            for r in self.caplog.records
            if r.exc_info
            and r.levelno >= logging.WARNING
            and r.name.startswith(("bullet_py", "aiohttp"))
        ]
        assert not bad, f"traceback logged for a client fault: {bad[0].getMessage()}"
        assert not any(
            r.name.startswith("aiohttp") and r.levelno >= logging.ERROR for r in self.caplog.records
        ), "aiohttp logged an error"


@dataclass
class Probe:
    """A healthy WebSocket session that keeps echoing through an attack (I1, I2).

    A background task reads the socket all the time, so the server's pings are
    answered between checks, as a browser would.
    """

    url: str
    bert: bool = False  # speak the Stream layer: {echo, Text} out, {echo, Text} back
    ledger: Ledger = field(default_factory=Ledger)
    rtts: list[float] = field(default_factory=list)
    name: str = "probe"
    _session: aiohttp.ClientSession | None = None
    _ws: Any = None
    _inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    _reader: asyncio.Task[None] | None = None

    async def open(self) -> Probe:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url, heartbeat=None)
        self._reader = asyncio.ensure_future(self._read())
        await self.check()
        return self

    async def _read(self) -> None:
        while True:
            msg = await self._ws.receive()
            self._inbox.put_nowait(msg)
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return

    async def check(self, count: int = 1, timeout: float = 10.0) -> None:
        """Send ``count`` stamped messages and read their echoes, in order."""
        for _ in range(count):
            message = self.ledger.stamp(self.name)
            began = time.perf_counter()
            await self._ws.send_str(encode((Atom("echo"), message)) if self.bert else message)
            while True:  # pushes meant for everyone (broadcasts) may come first
                async with asyncio.timeout(timeout):
                    reply = await self._inbox.get()
                assert reply.type is aiohttp.WSMsgType.TEXT, f"probe got {reply.type}: I1 broken"
                text = reply.data
                if self.bert:
                    term = decode(text)
                    if not (isinstance(term, tuple) and term[0] == Atom("echo")):
                        continue
                    text = term[1]
                key = Ledger.parse(text)
                if key is not None and key[0] == self.name:
                    break
            self.rtts.append(time.perf_counter() - began)
            self.ledger.delivered(text)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._session is not None:
            await self._session.close()
        self.ledger.assert_clean(redelivered_ok=False)


@contextlib.asynccontextmanager
async def probing(url: str, *, bert: bool = False) -> AsyncIterator[Probe]:
    """A probe open for the whole block; I1 and I2 checked once more at the end."""
    probe = await Probe(url, bert=bert).open()
    try:
        yield probe
        await probe.check(3)
    finally:
        await probe.close()
