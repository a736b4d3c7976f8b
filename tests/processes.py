"""Start the example scripts as real processes, the way users and outside probes do."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Running:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, line: str) -> None:
        self.proc = proc
        self.port = port
        self.line = line
        self.base = f"http://127.0.0.1:{port}"
        self.output: list[str] = []
        self._new_output = asyncio.Event()

    async def wait_output(self, text: str, timeout: float = 10.0) -> None:
        """Wait until the process has printed a line containing ``text``."""
        async with asyncio.timeout(timeout):
            while not any(text in line for line in self.output):
                self._new_output.clear()
                await self._new_output.wait()

    def _add(self, line: str) -> None:
        self.output.append(line)
        self._new_output.set()

    async def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` (None: none, it was sent already) and wait for the exit status."""
        if sig is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            return await self.proc.wait()


@contextlib.asynccontextmanager
async def run_script(script: str, *args: str, port: int | None = None) -> AsyncIterator[Running]:
    """Run ``examples/<script>`` on 127.0.0.1; yields once it prints its listening line."""
    port = port or free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / script),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    running = None
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"{script} exited before listening")
                line = raw.decode().strip()
                if line.startswith("listening on "):
                    break
        running = Running(proc, port, line)
        # Keep draining output so the child never blocks on a full pipe.
        drain = asyncio.ensure_future(_drain(proc, running))
        yield running
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if running is not None:
            drain.cancel()


async def _drain(proc: asyncio.subprocess.Process, running: Running) -> None:
    assert proc.stdout is not None
    while raw := await proc.stdout.readline():
        running._add(raw.decode(errors="replace").rstrip("\n"))
