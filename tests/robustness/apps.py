"""The servers the robustness items attack: the raw Bullet echo, and the Stream layer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from bullet_py import Options, setup
from bullet_py.codec.bert import decode, encode
from bullet_py.codec.terms import Atom
from bullet_py.router import Context, Router, ok
from bullet_py.web.endpoint import BulletEndpoint
from tests.helpers import FAST, Recorder

PROBE_PREFIX = "L|probe|"
A = Atom
SYNC = A("sync")
CHARACTER = A("character")


@dataclasses.dataclass
class Running:
    """A server under test: its endpoint, the callbacks it saw, its URL."""

    server: TestServer | None
    endpoint: BulletEndpoint
    events: list[tuple[str, str, Any]]
    calls: list[str] = dataclasses.field(default_factory=list)  # Stream handlers that ran
    probes: set[str] = dataclasses.field(default_factory=set)  # Stream sessions of a Probe
    bound_port: int = 0  # when served by served() rather than a TestServer

    @property
    def port(self) -> int:
        if self.server is None:
            return self.bound_port
        assert self.server.port is not None
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bullet"

    def probe_sessions(self) -> set[str]:
        """Sessions a harness Probe used (they are not the attacker's)."""
        found = {
            e[1]
            for e in self.events
            if e[0] == "message" and isinstance(e[2], str) and e[2].startswith(PROBE_PREFIX)
        }
        return found | self.probes

    def closes(self) -> int:
        """Close callbacks run, the probe's excluded."""
        probes = self.probe_sessions()
        return sum(1 for e in self.events if e[0] == "close" and e[1] not in probes)

    def opens(self) -> int:
        """Sessions opened, the probe's excluded."""
        probes = self.probe_sessions()
        return sum(1 for e in self.events if e[0] == "open" and e[1] not in probes)


def echo_app(**options: Any) -> tuple[web.Application, Running]:
    """The raw Bullet layer with an echo handler (tests.helpers.Recorder), FAST timings."""
    events: list[tuple[str, str, Any]] = []
    app = web.Application()
    endpoint = setup(
        app, "/bullet", lambda: Recorder(events), options=Options(**{**FAST, **options})
    )
    return app, Running(None, endpoint, events)


async def echo_server(aiohttp_server: Any, **options: Any) -> Running:
    """:func:`echo_app` on pytest-aiohttp's TestServer (handler_cancellation on)."""
    app, running = echo_app(**options)
    running.server = await aiohttp_server(app)
    return running


@contextlib.asynccontextmanager
async def served(
    app: web.Application,
    running: Running | None = None,
    *,
    handler_cancellation: bool = False,
    keepalive_timeout: float = 15.0,
    socks: tuple[socket.socket, ...] = (),
) -> AsyncIterator[int]:
    """Serve ``app`` as bullet_py.web.serve does (aiohttp's own runner settings).

    Listens on 127.0.0.1 (the port is yielded, and set on ``running``) and on
    any extra listening sockets (e.g. one made inside a network namespace).
    """
    runner = web.AppRunner(
        app, handler_cancellation=handler_cancellation, keepalive_timeout=keepalive_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        for sock in socks:
            await web.SockSite(runner, sock).start()
        port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        if running is not None:
            running.bound_port = port
        yield port
    finally:
        await runner.cleanup()


class Character:
    """The Backbone example's shape: one shared model, reads and updates."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.state: dict[str, Any] = {"name": "Zoë", "level": 1}

    def read(self, ctx: Context, props: dict[str, Any]) -> Any:
        self.calls.append("read")
        return ok(self.state)

    def update(self, ctx: Context, props: dict[str, Any]) -> Any:
        self.calls.append("update")
        self.state.update(props)
        ctx.broadcast(ok(self.state))
        return ok(self.state)


def stream_router(calls: list[str], probes: set[str] | None = None) -> Router:
    """A Router with the ``character`` model and a few actions the items need."""
    router = Router(timeout=1.0)
    router.model("character", Character(calls))

    @router.action("echo")
    def echo(ctx: Context, msg: Any) -> Any:
        if isinstance(msg, str) and msg.startswith(PROBE_PREFIX):
            if probes is not None:
                probes.add(ctx.session_id)
        else:
            calls.append("echo")
        return (A("echo"), msg)

    @router.action("big")
    def big(ctx: Context, msg: Any) -> Any:
        calls.append("big")
        return "x" * (50 * 1024 * 1024)

    @router.action("nap")
    async def nap(ctx: Context, msg: Any) -> Any:
        calls.append("nap")
        await asyncio.sleep(30)

    return router


async def stream_server(
    aiohttp_server: Any,
    *,
    configure: Callable[[Router, list[str]], None] | None = None,
    **options: Any,
) -> Running:
    """The Stream layer (BERT) with a recording ``character`` model.

    ``configure(router, calls)`` may register more actions before it serves.
    """
    calls: list[str] = []
    events: list[tuple[str, str, Any]] = []
    probes: set[str] = set()
    router = stream_router(calls, probes)
    if configure is not None:
        configure(router, calls)

    @router.on_open
    def opened(ctx: Context) -> None:
        events.append(("open", ctx.session_id, ctx.conn.transport))

    @router.on_close
    def closed(ctx: Context) -> None:
        events.append(("close", ctx.session_id, ctx.conn.close_code))

    app = web.Application()
    endpoint = setup(app, "/bullet", router, options=Options(**{**FAST, **options}))
    server = await aiohttp_server(app)
    return Running(server, endpoint, events, calls, probes)


def read_msg() -> str:
    return encode((SYNC, (A("read"), CHARACTER, [])))


def is_error(text: str, reason: str, detail: str | None = None) -> bool:
    """True when ``text`` decodes to ``{error, reason, Detail}`` (Detail checked if given)."""
    term = decode(text)
    if not (isinstance(term, tuple) and len(term) == 3 and term[0] == A("error")):
        return False
    return term[1] == reason and (detail is None or term[2] == detail)
