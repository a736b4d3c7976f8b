"""A real ``redis-server`` per test, on a free port of 127.0.0.1 (no Docker).

The server can be stopped and started again on the same port mid-test, with
or without persistence (append-only file), to test outages and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.processes import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """One redis-server subprocess; ``url`` stays the same across restarts."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.persistent = persistent
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.output: list[str] = []  # the server's log, for failing tests

    async def start(self, timeout: float = 10.0) -> None:
        args = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "always",
            "--dir",
            str(self.workdir),
            "--logfile",
            "",
        ]
        self.proc = await asyncio.create_subprocess_exec(
            REDIS_SERVER,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError("redis-server exited:\n" + "".join(lines))
                line = raw.decode(errors="replace")
                lines.append(line)
                self.output.append(line.rstrip())
                if "Ready to accept connections" in line:
                    break
        self._drain = asyncio.ensure_future(self._drain_output(self.proc))

    async def _drain_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while raw := await proc.stdout.readline():
            self.output.append(raw.decode(errors="replace").rstrip())

    async def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (a clean shutdown, which writes the append-only file) or SIGKILL."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.returncode is None:
            if kill:
                proc.kill()
            else:
                proc.terminate()
            async with asyncio.timeout(timeout):
                await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(kill=True)


@pytest.fixture
async def persistent_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A server that keeps its data across a clean restart (append-only file)."""
    server = RedisServer(tmp_path, persistent=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(kill=True)
