"""The single aiohttp view behind a Bullet URL: choose the transport, check the origin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from ..backends.base import Broker
from ..config import Options
from ..connection import CloseReason, Connection
from ..core.fairshare import Room
from ..core.negotiate import ALLOW_HEADER, Transport, select_transport
from ..core.origin import normalise_origin, origin_allowed, own_origin
from ..core.ratelimit import limiter
from ..exceptions import BackendError, ProtocolError
from ..handler import HandlerFactory
from ..hub import Hub
from ..logs import log_event, reject
from ..registry import Registry, new_session_id
from . import eventsource, polling, websocket
from .exchange import Exchange, client_address

logger = logging.getLogger("bullet_py")

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
            limiter(opts.post_rate_per_session),
            limiter(opts.post_rate_per_address),
        )
        self.mint_limits = (
            limiter(opts.session_mint_rate_per_address, opts.session_mint_burst_per_address),
            limiter(opts.session_mint_rate_per_cookie, opts.session_mint_burst_per_cookie),
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

    # --- sessions (what the transports may use: see exchange.Services) -------

    def create_connection(
        self, exchange: Exchange, *, session_id: str | None = None, register: bool = True
    ) -> Connection:
        conn = Connection(
            session_id=session_id or new_session_id(),
            transport=exchange.transport,
            handler=self.handler_factory(),
            registry=self.registry,
            options=self.options,
            hub=self.hub,
            request=exchange.request,
            address=client_address(exchange),
        )
        if register:
            self.registry.add(conn)
            if exchange.transport is not Transport.WEBSOCKET:
                # Found again by its cookie, on any process: a stream's POSTs
                # may land anywhere; a polling session's queue may be shared.
                store = self.hub.store
                queued = exchange.transport is not Transport.EVENTSOURCE
                store.adopt(conn.session_id, queued=queued)
                conn.share(store, queue_in_store=queued and store.holds_queues)
        return conn

    def check_capacity(self, transport: Transport, address: str | None = None) -> None:
        """Refuse (503) a new session when the server is stopping or the table is full.

        With the client's ``address``, a full table is shared fairly: an
        address under its share may take the place of the newest anonymous
        session of the heaviest one (core.fairshare); an address at its share
        (or at ``max_sessions_per_address``) is refused.
        """
        if self.shutting_down:
            room = Room.REFUSE_FULL
        elif address is None:
            room = Room.REFUSE_FULL if self.registry.full else Room.ADMIT
        else:
            room = self.registry.make_room(address)
        if room is not Room.ADMIT:
            raise ProtocolError(
                "no room for a new session",
                503,
                event="session_limit",
                reason=room.value,
                headers={"Retry-After": "5"},
            )

    def limit_minting(self, exchange: Exchange) -> None:
        """Refuse (429) a new session over its address's or its cookie's minting rate.

        Counted for every kind of new session: a pending polling id, an event
        stream, a WebSocket, a one-message ``POST``. The cookie is the stale
        one presented (a client that keeps one and keeps getting new ids).
        """
        per_address, per_cookie = self.mint_limits
        if per_address is None and per_cookie is None:
            return
        now = asyncio.get_running_loop().time()
        reason = None
        if per_address is not None and not per_address.allow(client_address(exchange), now):
            reason = "mint_address"
        elif (
            per_cookie is not None
            and exchange.session_id
            and not per_cookie.allow(exchange.session_id, now)
        ):
            reason = "mint_cookie"
        if reason is not None:
            raise ProtocolError(
                "",
                429,
                event="rate_limited",
                reason=reason,
                headers={"Retry-After": "1"},
                session_id=exchange.session_id,
            )

    def set_cookie(self, exchange: Exchange, response: web.StreamResponse, sid: str) -> None:
        """Name the session in a cookie; a tab's cookie is its own and expires unused."""
        opts = self.options
        request = exchange.request
        response.set_cookie(
            exchange.cookie_name,
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
                if exchange.tab is not None
                else None
            ),
        )

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
        try:
            if transport is Transport.REJECT:
                raise ProtocolError(
                    "",
                    decision.status,
                    event="bad_request",
                    reason=f"status_{decision.status}",
                    headers={"Allow": ALLOW_HEADER} if decision.status == 405 else None,
                )
            origin = request.headers.get("Origin")
            if transport is Transport.PREFLIGHT:
                return self._preflight(origin)
            if not self._origin_ok(request, origin):
                raise ProtocolError("", 403, event="cross_origin", reason="origin")
            if self.shutting_down:
                raise ProtocolError("stopping", 503, headers={"Retry-After": "5"})
            exchange = Exchange(request, transport, opts.cookie_name)
            response: web.StreamResponse
            if transport is Transport.WEBSOCKET:
                response = await websocket.serve(self, exchange)
            elif transport is Transport.EVENTSOURCE:
                response = await eventsource.serve(self, exchange)
            elif transport is Transport.POLL:
                response = await polling.serve_poll(self, exchange)
            else:
                response = await polling.serve_send(self, exchange)
        except ProtocolError as refused:
            response = await _refusal(request, transport, refused)
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

    def _preflight(self, origin: str | None) -> web.Response:
        allowed = self._explicitly_allowed(origin)
        if allowed is None:
            raise ProtocolError(
                "", 405, event="bad_request", reason="preflight", headers={"Allow": ALLOW_HEADER}
            )
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


async def _refusal(
    request: web.Request, transport: Transport, refused: ProtocolError
) -> web.StreamResponse:
    """The one place a refusal becomes an answer (and its one log line)."""
    if refused.event:
        label = request.method[:16] if transport is Transport.REJECT else transport.value
        if transport is Transport.PREFLIGHT:
            label = "options"
        reject(
            refused.event,
            refused.reason,
            transport=label,
            session_id=refused.session_id,
            length=refused.length,
        )
    if not refused.close_connection:
        return web.Response(status=refused.status_hint, headers=refused.headers, text=refused.text)
    # Answer, then close the connection leaving the rest of the body unread:
    # otherwise aiohttp would read (and inflate, if compressed) what the client
    # still sends before the next request on the connection.
    response = web.Response(
        status=refused.status_hint, headers={**refused.headers, "Connection": "close"}
    )
    try:
        await response.prepare(request)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    if request.transport is not None:
        request.transport.close()
    return response


def describe(endpoint: BulletEndpoint) -> dict[str, Any]:
    """Counts for tests and figures."""
    registry = endpoint.registry
    return {
        "sessions": len(registry),
        "pending": registry.pending_count,
        "opened": registry.opened,
        "finished": registry.finished,
    }
