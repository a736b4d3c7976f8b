"""Shared test helpers: the original client's headers, an event-stream reader, app builders."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, Self

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


#: How long a raw client waits for each part of an answer.
RAW_TIMEOUT = 5.0


class RawHttpClient:
    """One keep-alive HTTP/1.1 connection on bare streams, as the original client's XHRs.

    It sends the session cookie it holds and keeps the one an answer sets, so
    tests can see exactly which bytes each answer is.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.cookie = ""

    @classmethod
    async def open(cls, port: int, cookie: str = "") -> Self:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        client.cookie = cookie
        return client

    def poll_bytes(self) -> bytes:
        """The original client's poll (with the cookie, once there is one)."""
        headers = "".join(f"{name}: {value}\r\n" for name, value in POLL_HEADERS.items())
        cookie = f"Cookie: {self.cookie}\r\n" if self.cookie else ""
        return f"GET /bullet HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}{cookie}\r\n".encode()

    async def answer(self) -> tuple[bytes, bytes]:
        """The next answer's head and body (by its Content-Length)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), RAW_TIMEOUT)
        found = re.search(rb"Content-Length: (\d+)", head)
        size = int(found.group(1)) if found else 0
        body = await asyncio.wait_for(self.reader.readexactly(size), RAW_TIMEOUT)
        cookie = re.search(rb"Set-Cookie: ([^;]+);", head)
        if cookie:
            self.cookie = cookie.group(1).decode()
        return head, body

    async def start_session(self) -> None:
        """A first poll: answered 204 at once, with the session's cookie."""
        self.writer.write(self.poll_bytes())
        head, _ = await self.answer()
        assert head.startswith(b"HTTP/1.1 204 ") and self.cookie

    def close(self) -> None:
        self.writer.close()


def without_date(head: bytes) -> bytes:
    """An answer's head with its Date (which changes each second) blanked."""
    return re.sub(rb"Date: [^\r]+", b"Date: -", head)
