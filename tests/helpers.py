"""Shared test helpers: the original client's headers, an event-stream reader, app builders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bullet_py import Connection, Handler, Options, setup
from bullet_py.web.endpoint import BulletEndpoint

# What the original bullet.js (jQuery 1.7) sends.
POLL_HEADERS = {
    "X-Socket-Transport": "xhrPolling",
    "X-Requested-With": "XMLHttpRequest",
    "Accept": "text/plain, */*; q=0.01",
}
POST_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
    "X-Socket-Transport": "xhrPolling",
    "X-Requested-With": "XMLHttpRequest",
}
SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}

# Short timings for tests: every wait is derived from these, never a bare sleep.
FAST = dict(
    poll_timeout=1.0,
    stream_lifetime=5.0,
    stream_keepalive=1.0,
    session_idle_timeout=1.0,
    pending_session_ttl=2.0,
    write_timeout=2.0,
    shutdown_timeout=2.0,
    # Every test client comes from 127.0.0.1: minting limits are tested on their own
    # (tests/robustness/test_i_abuse.py), not in the way of tests that open many sessions.
    session_mint_rate_per_address=None,
    session_mint_rate_per_cookie=None,
)


def cache_buster() -> dict[str, str]:
    return {"_": str(int(time.time() * 1000))}


class Recorder(Handler):
    """Echoes messages and records every callback, for assertions."""

    events: list[tuple[str, str, Any]]

    def __init__(self, events: list[tuple[str, str, Any]]) -> None:
        self.events = events

    async def on_open(self, conn: Connection) -> None:
        self.events.append(("open", conn.session_id, conn.transport))

    async def on_message(self, conn: Connection, message: str) -> str | None:
        self.events.append(("message", conn.session_id, message))
        if message.startswith("noreply"):
            return None
        return message

    async def on_info(self, conn: Connection, info: Any) -> str | None:
        self.events.append(("info", conn.session_id, info))
        return f"info:{info}"

    async def on_close(self, conn: Connection) -> None:
        self.events.append(("close", conn.session_id, conn.close_code))


def make_app(
    events: list[tuple[str, str, Any]] | None = None,
    *,
    handler: Callable[[], Handler] | None = None,
    **options: Any,
) -> tuple[web.Application, BulletEndpoint]:
    """An app with one endpoint at ``/bullet``; FAST timings unless overridden."""
    app = web.Application()
    record = events if events is not None else []
    factory = handler or (lambda: Recorder(record))
    endpoint = setup(app, "/bullet", factory, options=Options(**{**FAST, **options}))
    return app, endpoint


def closes(events: list[tuple[str, str, Any]], session_id: str | None = None) -> int:
    return sum(1 for e in events if e[0] == "close" and (session_id is None or e[1] == session_id))


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition the server updates in the background, bounded in time."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class EventStreamReader:
    """Parses an event stream as a browser does (CR, LF and CRLF end lines)."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.buffer = ""
        self.comments = 0

    async def next_event(self, timeout: float = 5.0) -> str | None:
        """The data of the next event, or None when the stream ends."""
        data: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                line = await self._line()
                if line is None:
                    return None
                if line == "":
                    if data:
                        return "\n".join(data)
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                field, _, value = line.partition(":")
                if value.startswith(" "):
                    value = value[1:]
                if field == "data":
                    data.append(value)
                else:
                    raise AssertionError(f"unexpected field {field!r}")

    async def _line(self) -> str | None:
        while True:
            for i, ch in enumerate(self.buffer):
                if ch == "\n" or (ch == "\r" and i + 1 < len(self.buffer)):
                    end = i + 1
                    if ch == "\r" and self.buffer[i + 1] == "\n":
                        end = i + 2
                    line, self.buffer = self.buffer[:i], self.buffer[end:]
                    return line
            chunk = await self.response.content.readany()
            if not chunk:
                return None
            self.buffer += chunk.decode("utf-8")
