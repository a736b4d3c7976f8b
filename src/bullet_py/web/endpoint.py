"""The single aiohttp view behind a Bullet URL: choose the transport, check the origin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
from typing import Any

from aiohttp import web

from ..backends.base import Broker
from ..config import Options
from ..connection import CloseReason, Connection
from ..core.negotiate import ALLOW_HEADER, Transport, select_transport
from ..core.origin import normalise_origin, origin_allowed, own_origin
from ..core.ratelimit import RateLimiter
from ..exceptions import BackendError
from ..handler import HandlerFactory
from ..hub import Hub
from ..logs import log_event, reject
from ..registry import Registry, new_session_id
from . import eventsource, polling, websocket
from .tabs import tab_id

logger = logging.getLogger("bullet_py")

_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-_")

CORS_ALLOW_HEADERS = "Content-Type, X-Socket-Transport, X-Requested-With, X-Bullet-Tab"


class BulletEndpoint:
    """Everything one Bullet URL needs: options, handler factory, sessions, hub."""

    def __init__(
        self,
        handler_factory: HandlerFactory,
        *,
        options: Options | None = None,
        broker: Broker | None = None,
    ) -> None:
        self.handler_factory = handler_factory
        self.options = options or Options()
        self.registry = Registry(self.options)
        self.hub = Hub(self.registry, broker)
        self.shutting_down = False
        self._sweeper: asyncio.Task[None] | None = None
        self._cleaning_up = False
        opts = self.options
        self.post_limits = (
            None if opts.post_rate_per_session is None else RateLimiter(opts.post_rate_per_session),
            None if opts.post_rate_per_address is None else RateLimiter(opts.post_rate_per_address),
        )

    # --- lifecycle (wired to the app's signals by setup()) ------------------

    async def startup(self) -> None:
        await self.hub.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def shutdown(self) -> None:
        """Answer parked polls, close WebSockets with 1001, end streams, run close callbacks."""
        self.shutting_down = True
        queued = 0
        for conn in self.registry:
            queued += len(conn.outbox)
            conn.close(CloseReason.GOING_AWAY)
        if queued:
            log_event(logging.WARNING, "shutdown", dropped_on_shutdown=queued)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.shutdown_timeout
        await self.registry.wait_empty(self.options.shutdown_timeout)
        await self.registry.drain_tasks(max(0.0, deadline - loop.time()))

    async def cleanup(self) -> None:
        if self._sweeper is not None:
            self._cleaning_up = True  # the loop also stops on this (see _sweep_forever)
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for conn in self.registry:
            await conn.finish()
        await self.hub.close()

    async def _sweep_forever(self) -> None:
        opts = self.options
        period = min(1.0, opts.pending_session_ttl / 4, opts.session_idle_timeout / 4)
        # Not only cancellation: on Python 3.11, a cancel landing as a Redis reply
        # arrives can be lost inside redis-py (asyncio.wait_for), so check a flag.
        while not self._cleaning_up:
            await asyncio.sleep(period)
            try:
                await self.hub.sync_activity()  # polls served by other processes count too
            except BackendError as exc:
                log_event(logging.WARNING, "backend_unavailable", during="sweep", error=exc)
            self.registry.sweep()

    # --- sessions -------------------------------------------------------------

    def create_connection(
        self,
        transport: Transport,
        request: web.Request,
        *,
        session_id: str | None = None,
        register: bool = True,
    ) -> Connection:
        conn = Connection(
            session_id=session_id or new_session_id(),
            transport=transport,
            handler=self.handler_factory(),
            registry=self.registry,
            options=self.options,
            request=request,
        )
        if register:
            self.registry.add(conn)
            store = self.hub.store
            if store is not None and transport is Transport.EVENTSOURCE:
                # Several processes: the stream's POSTs may land on any of them.
                conn.store = store
                store.adopt(conn.session_id, queued=False)
        return conn

    def refuse_new_session(self, transport: Transport) -> web.Response | None:
        """503 when the session table is full or the server is stopping."""
        if self.shutting_down or self.registry.full:
            reject("session_limit", "full", transport=transport.value)
            return web.Response(status=503, headers={"Retry-After": "5"})
        return None

    def set_cookie(self, request: web.Request, response: web.StreamResponse, sid: str) -> None:
        """Name the session in a cookie; a tab's cookie is its own and expires unused."""
        tabbed = tab_id(request) is not None
        opts = self.options
        response.set_cookie(
            self.cookie_name(request),
            sid,
            path=request.path,
            httponly=True,
            samesite="Lax",
            secure=request.secure,
            # A closed tab leaves no live session behind, so its cookie should
            # not pile up in the browser either: it lasts a few idle timeouts
            # and every poll and stream of a live tab renews it.
            max_age=(
                int(2 * opts.session_idle_timeout + opts.poll_timeout + (opts.stream_lifetime or 0))
                + 60
                if tabbed
                else None
            ),
        )

    def cookie_name(self, request: web.Request) -> str:
        """``bullet_sid``, or ``bullet_sid.<tab>`` for a client that names its tab.

        Tabs of one browser share cookies, so with the original client they
        share a session. The project's client sends a tab id (``X-Bullet-Tab``,
        or ``bullet_tab`` in an EventSource URL), and each tab then has a
        cookie, so a session, of its own. The id only picks which cookie to
        read: session ids are still issued by the server, never taken from it.
        """
        tab = tab_id(request)
        return self.options.cookie_name if tab is None else f"{self.options.cookie_name}.{tab}"

    def session_cookie(self, request: web.Request) -> str | None:
        """The session id in the request's cookie ("" or None when there is none).

        Read by hand when the header holds no quoting and the value is a plain
        token (every id this server issues is): aiohttp's full cookie parser
        costs more than the rest of a poll's routing. Anything else goes to it.
        """
        header = request.headers.get("Cookie")
        name = self.cookie_name(request)
        if header is None or name not in header:
            return None
        if '"' not in header:
            value = None
            for part in header.split(";"):
                key, sep, rest = part.partition("=")
                if key.strip() == name:
                    value = rest.strip() if sep else ""
            if value is None or _TOKEN_CHARS.issuperset(value):
                return value
        return request.cookies.get(name)

    # --- the view ---------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        opts = self.options
        decision = select_transport(
            request.method,
            request.headers,
            websocket=opts.websocket,
            eventsource=opts.eventsource,
            polling=opts.polling,
        )
        transport = decision.transport
        if transport is Transport.REJECT:
            reject("bad_request", f"status_{decision.status}", transport=request.method[:16])
            headers = {"Allow": ALLOW_HEADER} if decision.status == 405 else None
            return web.Response(status=decision.status, headers=headers)
        origin = request.headers.get("Origin")
        if transport is Transport.PREFLIGHT:
            return self._preflight(request, origin)
        if not self._origin_ok(request, origin):
            reject("cross_origin", "origin", transport=transport.value)
            return web.Response(status=403)
        if self.shutting_down:
            return web.Response(status=503, headers={"Retry-After": "5"})
        response: web.StreamResponse
        if transport is Transport.WEBSOCKET:
            response = await websocket.serve(self, request)
        elif transport is Transport.EVENTSOURCE:
            response = await eventsource.serve(self, request)
        elif transport is Transport.POLL:
            response = await polling.serve_poll(self, request)
        else:
            response = await polling.serve_send(self, request)
        if not response.prepared:
            response.headers.update(self.cors_headers(request))
        return response

    def _origin_ok(self, request: web.Request, origin: str | None) -> bool:
        return origin_allowed(
            origin,
            sec_fetch_site=request.headers.get("Sec-Fetch-Site"),
            own=None if origin is None else own_origin(request.scheme, request.host),
            allowed=self.options.allowed_origins,
            allow_missing=self.options.allow_missing_origin,
        )

    def _explicitly_allowed(self, origin: str | None) -> str | None:
        """The origin to echo in CORS headers: only one on the allow-list."""
        allowed = self.options.allowed_origins
        if origin is None or allowed is None:
            return None
        normal = normalise_origin(origin)
        return origin if normal is not None and normal in allowed else None

    def _preflight(self, request: web.Request, origin: str | None) -> web.Response:
        allowed = self._explicitly_allowed(origin)
        if allowed is None:
            reject("bad_request", "preflight", transport="options")
            return web.Response(status=405, headers={"Allow": ALLOW_HEADER})
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": allowed,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": ALLOW_HEADER,
                "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    def cors_headers(self, request: web.Request) -> dict[str, str]:
        """CORS headers for a response to an allowed foreign origin (else none)."""
        allowed = self._explicitly_allowed(request.headers.get("Origin"))
        if allowed is None:
            return {}
        return {
            "Access-Control-Allow-Origin": allowed,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }


def describe(endpoint: BulletEndpoint) -> dict[str, Any]:
    """Counts for tests and figures."""
    registry = endpoint.registry
    return {
        "sessions": len(registry),
        "pending": registry.pending_count,
        "opened": registry.opened,
        "finished": registry.finished,
    }
