"""What a transport gets: the request read once, and a narrow view of its endpoint.

The endpoint resolves who is asking (scheme, host and client address, through
trusted proxies: :mod:`bullet_py.core.forwarded`) before anything else, then
reads the session cookie and the tab id once per request into an
:class:`Exchange`; each transport then works from that and from
:class:`Services`, the few things of the endpoint it may use. Transports never
import the endpoint, so the endpoint can import them.
"""

from __future__ import annotations

import string
from typing import Any, Protocol

from aiohttp import web

from ..config import Options
from ..connection import Connection
from ..core.forwarded import Peer
from ..core.negotiate import Transport
from ..core.ratelimit import RateLimiter
from ..hub import Hub
from ..registry import Registry
from .sweep import Sweep

_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
_TAB_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


class Exchange:
    """One request at the endpoint, with what every transport asks of it read once."""

    __slots__ = (
        "client_ip",
        "cookie_name",
        "host",
        "identity",
        "request",
        "scheme",
        "seen",
        "session_id",
        "tab",
        "transport",
    )

    def __init__(
        self,
        request: web.Request,
        transport: Transport,
        cookie_base: str,
        peer: Peer | None = None,
        identity: Any = None,
    ) -> None:
        self.request = request
        self.transport = transport
        if peer is None:
            peer = Peer(request.scheme, request.headers.get("Host", ""), request.remote)
        # As the browser sees it: behind a trusted proxy, what the proxy reports.
        self.scheme = peer.scheme
        self.host = peer.host
        self.client_ip = peer.client
        self.identity = identity  # what the endpoint's authorize hook returned
        self.tab = tab_id(request)
        # Tabs of one browser share cookies, so with the original client they
        # share a session. The project's client names its tab, and each tab
        # then has a cookie (so a session) of its own. The id only picks which
        # cookie to read: session ids are still issued by the server.
        self.cookie_name = cookie_base if self.tab is None else f"{cookie_base}.{self.tab}"
        self.session_id = read_cookie(request, self.cookie_name)
        # How many messages the client received in its session, if it counts
        # (the project's bullet.js): a header, or the query where a request
        # cannot carry headers (WebSocket and EventSource in a browser).
        seen = request.headers.get("X-Bullet-Seen")
        if not seen and "?" in request.raw_path:  # parse a query only when there is one
            seen = request.query.get("bullet_seen")
        self.seen = _count(seen)

    @property
    def secure(self) -> bool:
        """The browser's connection is https (here or at a trusted proxy)."""
        return self.scheme == "https"


def _count(value: str | None) -> int | None:
    """A decimal count of at most 15 digits, else None (as from a client that does not count)."""
    if value is not None and 0 < len(value) <= 15 and value.isascii() and value.isdigit():
        return int(value)
    return None


def client_address(exchange: Exchange) -> str:
    """The client's address, the key of per-address limits and fair shares.

    Behind a trusted proxy, the client the proxy reports; else the peer's
    address as the socket sees it ("-" if unknown).
    """
    return exchange.client_ip or "-"


def tab_id(request: web.Request) -> str | None:
    """The tab id the project's client sends, if well formed (8 to 64 token characters).

    ``X-Bullet-Tab`` on polls and POSTs; ``bullet_tab`` in the query of an
    EventSource URL, which cannot carry headers.
    """
    tab = request.headers.get("X-Bullet-Tab")
    if not tab and "bullet_tab" in request.raw_path:  # the query is parsed (and kept) only then
        tab = request.query.get("bullet_tab")
    return well_formed_tab(tab)


def well_formed_tab(tab: str | None) -> str | None:
    """``tab`` if it is a well-formed tab id (8 to 64 token characters), else None."""
    if tab and 8 <= len(tab) <= 64 and _TAB_CHARS.issuperset(tab):
        return tab
    return None


def read_cookie(request: web.Request, name: str) -> str | None:
    """The value of cookie ``name`` ("" or None when there is none).

    Read by hand where it can be (:func:`plain_cookie`); anything else goes to
    aiohttp's cookie parser.
    """
    header = request.headers.get("Cookie")
    value = plain_cookie(header, name)
    return request.cookies.get(name) if value is NEEDS_PARSER else value


#: What :func:`plain_cookie` answers for a header only the full cookie parser may read.
NEEDS_PARSER = "\0"


def plain_cookie(header: str | None, name: str) -> str | None:
    """Cookie ``name`` read from a ``Cookie`` header by hand, or :data:`NEEDS_PARSER`.

    By hand only where the header holds no quoting and the value is a plain
    token (every id this server issues is): aiohttp's full cookie parser
    costs more than the rest of a poll's routing.
    """
    if header is None or name not in header:
        return None
    key = (header, name)
    try:
        return _COOKIES[key]  # a keep-alive client sends the same header every time
    except KeyError:
        pass
    if '"' not in header:
        value = None
        for part in header.split(";"):
            part_name, sep, rest = part.partition("=")
            if part_name.strip() == name:
                value = rest.strip() if sep else ""
        if value is None or _TOKEN_CHARS.issuperset(value):
            if len(header) <= _COOKIE_MEMO_LENGTH:
                if len(_COOKIES) >= _COOKIE_MEMO_SIZE:
                    _COOKIES.clear()  # many headers: not worth keeping
                _COOKIES[key] = value
            return value
    return NEEDS_PARSER


# What read_cookie found in a Cookie header (short ones only), so that it reads each once.
_COOKIES: dict[tuple[str, str], str | None] = {}
_COOKIE_MEMO_SIZE = 1024
_COOKIE_MEMO_LENGTH = 512


class Cut(Protocol):
    """A stream serving a parked session, as a stopping endpoint ends it."""

    def cut(self) -> None: ...


class Services(Protocol):
    """The part of an endpoint the transports use."""

    options: Options
    registry: Registry
    hub: Hub
    post_limits: tuple[RateLimiter | None, RateLimiter | None]
    views: set[Cut]  # streams serving parked sessions (web/view.py), cut on hand-off
    keepalives: Sweep  # every WebSocket's keep-alive check (web/sweep.py)
    shutting_down: bool  # set when the application's shutdown begins

    def create_connection(
        self, exchange: Exchange, *, session_id: str | None = None, register: bool = True
    ) -> Connection:
        """A new session for this request (registered unless ``register`` is False)."""

    def check_capacity(self, transport: Transport, address: str | None = None) -> None:
        """Raise ProtocolError (503) when no new session may start (from ``address``)."""

    def limit_minting(self, exchange: Exchange) -> None:
        """Raise ProtocolError (429) when the client starts new sessions too fast."""

    def set_cookie(self, exchange: Exchange, response: web.StreamResponse, sid: str) -> None:
        """Name the session in the request's cookie."""

    def cors_headers(self, request: web.Request) -> dict[str, str]:
        """CORS headers for an allowed foreign origin (else none)."""
