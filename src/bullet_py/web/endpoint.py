"""The single aiohttp view behind a Bullet URL: check the host, the transport, the origin.

Every request goes the same way, each step refusing with a ``ProtocolError``
before the next runs: who is asking (scheme, host, client through trusted
proxies), the Host (421), the method and transport, the origin (403), the
server's state (503), the application's ``authorize`` hook (401/403), and only
then a transport, which may find or create a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..backends.base import Broker
from ..boundary import CallbackFailed, CallbackTimeout, call_bounded
from ..config import Options
from ..connection import CloseReason, Connection
from ..core.fairshare import Room
from ..core.forwarded import Peer, TrustedProxies, resolve
from ..core.hosts import host_allowed, is_loopback_socket, normalise_pattern
from ..core.negotiate import ALLOW_HEADER, Transport, select_transport
from ..core.origin import normalise_origin, origin_allowed, own_origin
from ..core.ratelimit import limiter
from ..exceptions import BackendError, ProtocolError
from ..handler import HandlerFactory
from ..hub import Hub
from ..logs import log_event, session_hash
from ..registry import Registry, new_session_id
from . import eventsource, polling, postlane, websocket
from .answer import DirectAnswer, ok_bytes
from .exchange import Cut, Exchange, client_address
from .resume import park, resumes
from .sweep import Sweep

logger = logging.getLogger("bullet_py")

CORS_ALLOW_HEADERS = (
    "Content-Type, X-Socket-Transport, X-Requested-With, X-Bullet-Tab, X-Bullet-Seen"
)

# Remembered answers are kept only for short header values: real ones are.
_MEMO_LENGTH = 512

#: ``authorize(request) -> identity``, plain or async: runs on every request that
#: would create or use a session, before any exists. It returns the identity
#: (any value but None), or refuses: raises :class:`bullet_py.Refused`, or
#: returns None (401).
Authorize = Callable[[web.Request], Any]


class BulletEndpoint:
    """Everything one Bullet URL needs: options, handler factory, sessions, hub."""

    def __init__(
        self,
        handler_factory: HandlerFactory,
        *,
        options: Options | None = None,
        broker: Broker | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.handler_factory = handler_factory
        self.authorize = authorize
        self.options = options or Options()
        self.registry = Registry(self.options)
        self.hub = Hub(self.registry, broker)
        self.shutting_down = False
        self.views: set[Cut] = set()  # streams serving parked sessions (web/view.py)
        self.post_lanes: set[postlane.PostLane] = set()  # connections off aiohttp (web/postlane.py)
        # Every WebSocket's keep-alive check, on one timer (web/sweep.py).
        self.keepalives = Sweep(self.options.ws_ping_interval or 1.0)
        self._sweeper: asyncio.Task[None] | None = None
        self._cleaning_up = False
        opts = self.options
        self.trusted_proxies = TrustedProxies(opts.trusted_proxies)
        self.allowed_hosts = (
            None
            if opts.allowed_hosts is None
            else frozenset(normalise_pattern(host) for host in opts.allowed_hosts)
        )
        self._loopback: dict[object, bool] = {}  # local socket address -> is loopback
        self._hosts: dict[tuple[str, bool], bool] = {}  # (Host, loopback) -> served
        self._direct: dict[tuple[str, str, str | None], Peer] = {}  # peers not forwarded
        # (Origin, Sec-Fetch-Site, scheme, Host) -> allowed
        self._origins: dict[tuple[str, str | None, str, str], bool] = {}
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
        self.hub.on_orphan = self._end_orphan
        await self.hub.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def shutdown(self) -> None:
        """Answer parked polls, close WebSockets with 1001, end streams, run close callbacks.

        With a store that holds queues (Redis), the sessions are handed off
        instead (docs/sessions.md, "Several workers"): parked in the store,
        their connections dropped, so their clients resume them on another
        worker, which takes them over; ``on_close`` runs there when they end.
        """
        self.shutting_down = True
        for lane in list(self.post_lanes):
            lane.close_if_idle()  # as aiohttp closes its idle keep-alive connections
        if self.hub.store.holds_queues:
            await self._hand_off()
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

    async def _hand_off(self) -> None:
        """Park every resumable session and let go of it (its stream is dropped)."""
        opts = self.options
        loop = asyncio.get_running_loop()
        deadline = loop.time() + opts.shutdown_timeout / 2
        handed = [conn for conn in self.registry if not conn.closed and resumes(opts, conn)]
        for view in list(self.views):  # of sessions homed here or elsewhere
            view.cut()
        for conn in handed:
            holder = conn.holder
            if conn.attached and holder is not None:
                holder.drop()  # its transport lets go and parks it
        for conn in handed:
            await conn.wait_released(max(0.0, deadline - loop.time()))
            if conn.closed or conn.attached:
                continue  # ended meanwhile, or still held: closed with the rest
            park(self, conn)
            if conn.parked:
                self.registry.remove(conn)  # not finished: another worker takes it over
        if handed:
            log_event(logging.INFO, "shutdown_hand_off", sessions=len(handed))

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
            self._notice_dropped_streams()
            self.registry.sweep()

    def _notice_dropped_streams(self) -> None:
        """Wake the writer of a stream whose connection ended: it sees that and lets go.

        An event stream otherwise notices a drop only at its next write (a
        push, or the keepalive 15 s later); a client reconnecting meanwhile
        would find its session still held.
        """
        for conn in self.registry:
            holder = conn.holder
            if holder is not None and holder.gone():
                conn.wake_writer()

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
            identity=exchange.identity,
            address=client_address(exchange),
        )
        conn.recorder = recorder = self.hub.recorder
        recorder.opened(exchange.transport.value)
        if register:
            self.registry.add(conn)
            store = self.hub.store
            if exchange.transport is not Transport.WEBSOCKET or store.holds_queues:
                # Found again by its cookie, on any process: a stream's POSTs
                # may land anywhere; a polling session's queue may be shared;
                # a stream reconnecting to another process waits for it to be parked.
                queued = exchange.transport is Transport.POLL or (
                    exchange.transport is Transport.SEND
                )
                store.adopt(conn.session_id, queued=queued)
                conn.share(store, queue_in_store=queued and store.holds_queues)
        return conn

    async def _end_orphan(self, session_id: str, entry: str) -> None:
        """A parked session this process took over from a dead one, idle past its
        timeout: a fresh handler is told it resumes, then the session ends (``on_close``)."""
        store = self.hub.store
        conn = Connection(
            session_id=session_id,
            transport=Transport.POLL,  # no connection: its queue is in the store
            handler=self.handler_factory(),
            registry=self.registry,
            options=self.options,
            hub=self.hub,
        )
        conn.recorder = self.hub.recorder
        conn.share(store, queue_in_store=True)
        conn.parked = True
        store.adopt(session_id, queued=True)
        await store.catch_up(session_id, entry, lambda: self.registry.add(conn))
        await conn.resume()
        conn.close()

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
        # A closed tab leaves no live session behind, so its cookie should not
        # pile up in the browser either: it lasts a few idle timeouts and every
        # poll and stream of a live tab renews it.
        max_age = (
            int(2 * opts.session_idle_timeout + opts.poll_timeout + (opts.stream_lifetime or 0))
            + 60
            if exchange.tab is not None
            else None
        )
        secure = exchange.secure  # https at the browser, here or at a trusted proxy
        header = cookie_header(exchange.cookie_name, sid, request.path, max_age, secure=secure)
        if header is not None:
            # Written as text: a SimpleCookie kept by the response for the life
            # of a WebSocket costs about a KiB per connection, and time per poll.
            response.headers.add("Set-Cookie", header)
            return
        response.set_cookie(
            exchange.cookie_name,
            sid,
            path=request.path,
            httponly=True,
            samesite="Lax",
            secure=secure,
            max_age=max_age,
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
        peer = self.resolve_peer(request)
        try:
            if not self._host_ok(request, peer):
                raise ProtocolError(
                    "",
                    421,
                    event="bad_host",
                    reason="forwarded_host" if peer.forwarded else "host",
                    text="Misdirected Request: this host name is not served here.",
                    close_connection=transport is Transport.SEND,  # its body is left unread
                )
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
            if not self._origin_ok(request, peer, origin):
                raise ProtocolError("", 403, event="cross_origin", reason="origin")
            if self.shutting_down:
                raise ProtocolError("stopping", 503, headers={"Retry-After": "5"})
            exchange = Exchange(request, transport, opts.cookie_name, peer)
            if self.authorize is not None:
                exchange.identity = await self._authorize(request, transport is Transport.SEND)
            response: web.StreamResponse
            if transport is Transport.WEBSOCKET:
                response = await websocket.serve(self, exchange)
            elif transport is Transport.EVENTSOURCE:
                response = await eventsource.serve(self, exchange)
            elif transport is Transport.POLL:
                response = await polling.serve_poll(self, exchange)
            else:
                response = await polling.serve_send(self, exchange)
                if isinstance(response, DirectAnswer):
                    response = self._keep_on_lane(exchange, response)
        except ProtocolError as refused:
            self.hub.recorder.refused(refused.status_hint, refused.reason or refused.event or "-")
            response = await _refusal(request, transport, refused, peer.client)
        if opts.allowed_origins is not None and not response.prepared:
            response.headers.update(self.cors_headers(request))  # none without an allow-list
        return response

    def _keep_on_lane(self, exchange: Exchange, answer: DirectAnswer) -> web.StreamResponse:
        """Answer a ``POST`` and keep its connection on a lane (web/postlane.py) where it may."""
        conn = self.registry.get(exchange.session_id)
        request = exchange.request
        if conn is not None and not conn.closed:
            manager = postlane.lane_manager(self, request)
            if manager is not None:
                return postlane.enter(self, request, ok_bytes(answer.body), manager)
        return answer.as_response()

    def resolve_peer(self, request: web.Request) -> Peer:
        """The scheme, host and client address, believing a trusted proxy's headers."""
        headers = request.headers
        remote = request.remote
        if (
            remote is None
            or remote not in self.trusted_proxies
            or not (
                "Forwarded" in headers
                or "X-Forwarded-For" in headers
                or "X-Forwarded-Proto" in headers
                or "X-Forwarded-Host" in headers
            )
        ):
            return self.direct_peer(request.scheme, headers.get("Host", ""), remote)
        return resolve(
            peer=remote,
            scheme=request.scheme,
            host=headers.get("Host", ""),
            trusted=self.trusted_proxies,
            forwarded=headers.getall("Forwarded", ()),
            x_forwarded_for=headers.getall("X-Forwarded-For", ()),
            x_forwarded_proto=headers.getall("X-Forwarded-Proto", ()),
            x_forwarded_host=headers.getall("X-Forwarded-Host", ()),
        )

    def direct_peer(self, scheme: str, host: str, remote: str | None) -> Peer:
        """What :func:`resolve` answers a client that is not a trusted proxy: made once.

        The same few answers come again and again (a Peer is immutable).
        """
        key = (scheme, host, remote)
        peer = self._direct.get(key)
        if peer is None:
            peer = Peer(*key)
            if len(host) <= _MEMO_LENGTH:
                if len(self._direct) >= 1024:
                    self._direct.clear()
                self._direct[key] = peer
        return peer

    def _host_ok(self, request: web.Request, peer: Peer) -> bool:
        """The Host (the forwarded one behind a trusted proxy) is one this endpoint serves."""
        return self.host_served(peer.host, self.on_loopback(request.transport))

    def on_loopback(self, transport: asyncio.BaseTransport | None) -> bool:
        """Whether the socket is a loopback one, where only loopback names are served.

        Only without ``allowed_hosts`` does the socket matter (False otherwise).
        """
        if self.allowed_hosts is not None:
            return False
        sockname = None if transport is None else transport.get_extra_info("sockname")
        key = sockname[0] if isinstance(sockname, tuple) and sockname else sockname
        try:
            return self._loopback[key]
        except (KeyError, TypeError):
            loopback = is_loopback_socket(sockname)
            if isinstance(key, str) and len(self._loopback) < 64:
                self._loopback[key] = loopback
            return loopback

    def host_served(self, host: str, loopback: bool) -> bool:
        """Whether this endpoint serves ``host`` (on a loopback socket or not)."""
        if not host:
            return True  # no Host (HTTP/1.0): nothing to misdirect
        key = (host, loopback)
        served = self._hosts.get(key)
        if served is None:
            served = host_allowed(host, self.allowed_hosts, loopback=loopback)
            if len(self._hosts) >= 1024:
                self._hosts.clear()  # many names: an attacker's, not worth keeping
            self._hosts[key] = served
        return served

    def _origin_ok(self, request: web.Request, peer: Peer, origin: str | None) -> bool:
        """The request comes from this endpoint's own origin or an allowed one."""
        return self.origin_ok(origin, request.headers.get("Sec-Fetch-Site"), peer)

    def origin_ok(self, origin: str | None, sec_fetch_site: str | None, peer: Peer) -> bool:
        """Whether ``origin`` (with its ``Sec-Fetch-Site``) may use this endpoint.

        A browser sends ``Origin`` on every ``POST``, its own page's too: the
        verdict on (origin, Sec-Fetch-Site, scheme, host) is remembered, since
        parsing two origins costs more than the rest of the checks.
        """
        opts = self.options
        if origin is None:
            return origin_allowed(
                None,
                sec_fetch_site=sec_fetch_site,
                own=None,
                allowed=opts.allowed_origins,
                allow_missing=opts.allow_missing_origin,
            )
        key = (origin, sec_fetch_site, peer.scheme, peer.host)
        allowed = self._origins.get(key)
        if allowed is None:
            allowed = origin_allowed(
                origin,
                sec_fetch_site=sec_fetch_site,
                own=own_origin(peer.scheme, peer.host),
                allowed=opts.allowed_origins,
                allow_missing=opts.allow_missing_origin,
            )
            if len(origin) + len(peer.host) <= _MEMO_LENGTH:
                if len(self._origins) >= 1024:
                    self._origins.clear()  # many origins: an attacker's, not worth keeping
                self._origins[key] = allowed
        return allowed

    async def _authorize(self, request: web.Request, unread_body: bool) -> Any:
        """Run the application's hook: its identity, or a refusal (nothing exists yet).

        A refused POST's body is left unread and its connection closed (as for
        every POST refused before its body is read).
        """
        assert self.authorize is not None
        try:
            identity = await call_bounded(self.authorize, (request,), self.options.handler_timeout)
        except CallbackFailed as failed:
            if isinstance(failed.original, ProtocolError):  # Refused, or a rule of ours
                failed.original.close_connection |= unread_body
                raise failed.original from None
            log_event(logging.ERROR, "authorize_failed", error=repr(failed.original)[:200])
            raise ProtocolError("", 500, close_connection=unread_body) from None
        except CallbackTimeout:
            raise ProtocolError(
                "",
                503,
                event="authorize_failed",
                reason="timeout",
                headers={"Retry-After": "5"},
                close_connection=unread_body,
            ) from None
        if identity is None:
            raise ProtocolError(
                "", 401, event="unauthorized", reason="no_identity", close_connection=unread_body
            )
        return identity

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
            "Access-Control-Expose-Headers": "X-Bullet-Session",
            "Vary": "Origin",
        }


_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./~")


def cookie_header(
    name: str, value: str, path: str, max_age: int | None, *, secure: bool
) -> str | None:
    """The ``Set-Cookie`` value aiohttp would write, or None when any part needs quoting.

    Same attributes in the same (sorted) order as ``http.cookies.Morsel``.
    """
    if not (_PLAIN.issuperset(name) and _PLAIN.issuperset(value) and _PLAIN.issuperset(path)):
        return None
    parts = [f"{name}={value}", "HttpOnly"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    parts.append(f"Path={path}")
    parts.append("SameSite=Lax")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


async def _refusal(
    request: web.Request, transport: Transport, refused: ProtocolError, client: str | None
) -> web.StreamResponse:
    """The one place a refusal becomes an answer (and its one log line)."""
    if refused.event:
        label = request.method[:16] if transport is Transport.REJECT else transport.value
        if transport is Transport.PREFLIGHT:
            label = "options"
        log_event(  # the fields of logs.reject, and the client (behind a proxy, the real one)
            logging.WARNING,
            refused.event,
            reason=refused.reason,
            transport=label,
            session=session_hash(refused.session_id),
            length=refused.length,
            client=client or "-",
        )
    if not refused.close_connection:
        return web.Response(status=refused.status_hint, headers=refused.headers, text=refused.text)
    # Answer, then close the connection leaving the rest of the body unread:
    # otherwise aiohttp would read (and inflate, if compressed) what the client
    # still sends before the next request on the connection. A StreamResponse, not a
    # Response: middlewares that change unsent answers (aiohttp-session) pass a
    # streamed one through, and refuse a Response that is already sent.
    response = web.StreamResponse(
        status=refused.status_hint, headers={**refused.headers, "Connection": "close"}
    )
    response.content_length = 0
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
