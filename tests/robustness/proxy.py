"""A small in-test TCP proxy for deterministic faults (docs/robustness.md group H).

It sits between a test client and the server on 127.0.0.1 and, per connection
and per direction, can: cut after N bytes (reset both sides), stall (stop
forwarding, so the sender's buffers fill), half-close (send FIN one way), add a
delay per chunk, or just be cut now. Every decision is taken on bytes counted,
never on time, so the same test gives the same outcome on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

UP = "c2s"  # client -> server
DOWN = "s2c"  # server -> client


@dataclass
class Plan:
    """What to do to each new connection (the fault, decided before it happens)."""

    cut_after: dict[str, int] = field(default_factory=dict)  # direction -> bytes
    cut_at: dict[str, bytes] = field(default_factory=dict)  # direction -> cut just after this
    stall: set[str] = field(default_factory=set)
    delay: float = 0.0  # seconds per forwarded chunk (latency, not a correctness lever)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees the connection vanish."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ProxyConn:
    """One proxied connection; both directions are pumped by their own task."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        plan: Plan,
    ) -> None:
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.plan = Plan(dict(plan.cut_after), dict(plan.cut_at), set(plan.stall), plan.delay)
        self.counted = {UP: 0, DOWN: 0}
        self.data = {UP: bytearray(), DOWN: bytearray()}  # everything forwarded
        self.dropped = {UP: bytearray(), DOWN: bytearray()}  # read, then lost in a cut
        self.received = {UP: 0, DOWN: 0}  # read from the source, forwarded or not
        self._resume = {UP: asyncio.Event(), DOWN: asyncio.Event()}
        for direction in (UP, DOWN):
            if direction not in self.plan.stall:
                self._resume[direction].set()
        self._changed = asyncio.Event()
        self.cut_done = asyncio.Event()
        self._tasks = [
            asyncio.ensure_future(self._pump(UP, self.client_reader, self.server_writer)),
            asyncio.ensure_future(self._pump(DOWN, self.server_reader, self.client_writer)),
        ]

    async def _pump(
        self, direction: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                await self._resume[direction].wait()
                chunk = await reader.read(65536)
                self.received[direction] += len(chunk)
                if not chunk:
                    with contextlib.suppress(OSError, RuntimeError):
                        writer.write_eof()  # pass the half-close on
                    return
                limit = self.plan.cut_after.get(direction)
                marker = self.plan.cut_at.get(direction)
                if marker is not None and marker in chunk:
                    limit = self.counted[direction] + chunk.index(marker) + len(marker)
                if limit is not None and self.counted[direction] + len(chunk) >= limit:
                    head = chunk[: limit - self.counted[direction]]
                    self.dropped[direction] += chunk[len(head) :]
                    self._forward(direction, writer, head)
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    self.cut()
                    return
                if self.plan.delay:
                    await asyncio.sleep(self.plan.delay)
                self._forward(direction, writer, chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            self.cut()
        finally:
            self._changed.set()

    def _forward(self, direction: str, writer: asyncio.StreamWriter, data: bytes) -> None:
        if data:
            writer.write(data)
            self.counted[direction] += len(data)
            self.data[direction] += data
            self._changed.set()

    def stall(self, direction: str) -> None:
        """Stop forwarding ``direction``: its sender's buffers fill up."""
        self._resume[direction].clear()

    def resume(self, direction: str) -> None:
        self._resume[direction].set()

    def half_close(self, direction: str) -> None:
        """Send FIN toward the receiver of ``direction`` (e.g. UP: the server sees EOF)."""
        writer = self.server_writer if direction == UP else self.client_writer
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()

    def cut(self) -> None:
        """Reset both sides now, with nothing more forwarded."""
        if self.cut_done.is_set():
            return
        self.cut_done.set()
        _reset(self.client_writer)
        _reset(self.server_writer)
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def wait_bytes(self, direction: str, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` bytes have been read from ``direction``'s source."""
        async with asyncio.timeout(timeout):
            while self.received[direction] < count and not self.cut_done.is_set():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_text(self, direction: str, text: bytes, timeout: float = 10.0) -> None:
        """Wait until ``text`` has been forwarded in ``direction``."""
        async with asyncio.timeout(timeout):
            while text not in self.data[direction]:
                if self.cut_done.is_set():
                    raise AssertionError("connection cut before the text passed")
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self.cut()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class FaultProxy:
    """Listens on 127.0.0.1 and forwards to ``target_port``, applying ``plan``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.plan = Plan()
        self.plan_for: Callable[[int], Plan] | None = None  # per connection, by its index
        self.conns: list[ProxyConn] = []
        self._new = asyncio.Queue[ProxyConn]()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.conns:
            await conn.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bullet"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        plan = self.plan if self.plan_for is None else self.plan_for(len(self.conns))
        conn = ProxyConn((reader, writer), upstream, plan)
        self.conns.append(conn)
        self._new.put_nowait(conn)

    async def next_conn(self, timeout: float = 10.0) -> ProxyConn:
        """The next connection the proxy accepts."""
        async with asyncio.timeout(timeout):
            return await self._new.get()
