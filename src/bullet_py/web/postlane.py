"""A keep-alive connection whose plain ``POST``s bullet_py answers itself.

A polling client sends each message in a ``POST`` on a keep-alive
connection, and the answer is usually the handler's reply. Through aiohttp
each of those costs a parsed request object, a header multidict, a task,
routing and the response bookkeeping: more than the rest of the exchange.
So once a ``POST`` on a connection has been answered directly (web/answer.py)
to a live session of this process, the connection leaves aiohttp
(web/detach.py) and a :class:`PostLane` becomes its protocol. It answers the
next request itself when that request is one it can answer exactly as the
endpoint would:

- the same request line (``POST``, the same path, ``HTTP/1.1``), its head and
  body whole in what arrived, headers plainly written (printable ASCII, no
  folding, none of the ones read here or aiohttp's single ones twice), a
  ``Host``, a decimal ``Content-Length``;
- no ``Transfer-Encoding``, ``Expect`` or ``Upgrade``, no ``Connection`` but
  ``keep-alive``, no ``Content-Encoding`` but ``identity``;
- a served Host and an allowed origin, the same verdicts the endpoint gives,
  and no forwarding header from a trusted proxy (the endpoint resolves those);
- a cookie naming a live session of this process, within the ``POST`` rates;
- a body that is UTF-8, not empty, within ``max_message_size``.

Anything else (a poll, a refusal, a slow or split request, another URL) goes
back to a new aiohttp connection handler with every byte the client sent,
and is served there as before: the lane only ever answers what would have
been answered ``200`` or ``204`` with the same bytes. Requests are answered
one at a time and in order. The lane closes the connection after aiohttp's
keep-alive timeout and when the endpoint stops.

It is entered only where nobody could tell (:func:`lane_manager`): the
conditions of a direct answer, no access log, no ``authorize`` hook, no CORS
allow-list, an ASCII path without a query.
``tests/web/test_post_lane.py`` holds it to the endpoint's answers.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from ..core.forwarded import Peer, TrustedProxies
from ..core.text import exceeds, max_utf8_bytes, xhr_body
from .answer import no_content_bytes, ok_bytes
from .detach import DETACHED, release
from .exchange import NEEDS_PARSER, Services, plain_cookie, well_formed_tab

if TYPE_CHECKING:
    from ..connection import Connection

logger = logging.getLogger("bullet_py")

#: Bytes a lane holds unanswered (requests sent ahead) before it stops reading.
_PENDING_MAX = 2**16
#: A longer head, or one of more headers, goes to aiohttp, which applies its own limits
#: (a lane takes the lower of these and its connection handler's).
_HEAD_MAX = 8190
_HEADERS_MAX = 128

#: Header lines a lane reads itself: a token, a colon, printable ASCII and tabs, CRLF
#: between lines. Anything else (a folded line, a bare CR or LF, other bytes) goes to aiohttp.
_LINE = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*"
_HEADERS = re.compile(_LINE + rb"(?:\r\n" + _LINE + rb")*")

# The headers a lane reads (the endpoint reads these for a POST); each at most once.
_READ = frozenset(
    (
        b"host",
        b"content-length",
        b"cookie",
        b"origin",
        b"sec-fetch-site",
        b"x-bullet-tab",
        b"content-encoding",
        b"connection",
        b"transfer-encoding",
        b"expect",
        b"upgrade",
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    )
)
_FORWARDED = frozenset(
    (b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")
)
#: Headers whose repeat hands the request to aiohttp: those read here, and those aiohttp
#: refuses twice (400; its parser's SINGLETON_HEADERS, pinned by tests/web/test_post_lane.py).
_ONCE = _READ | frozenset(
    (
        b"content-location",
        b"content-range",
        b"content-type",
        b"etag",
        b"max-forwards",
        b"server",
        b"user-agent",
    )
)


class LaneEndpoint(Services, Protocol):
    """What a lane asks of its endpoint: the transports' view, and the endpoint's own checks."""

    authorize: Any
    trusted_proxies: TrustedProxies
    post_lanes: set[PostLane]

    def direct_peer(self, scheme: str, host: str, remote: str | None) -> Peer:
        """The peer of a client that is not a trusted proxy's, or whose proxy forwarded nothing."""

    def on_loopback(self, transport: asyncio.BaseTransport | None) -> bool:
        """Whether the socket is a loopback one (where only loopback names are served)."""

    def host_served(self, host: str, loopback: bool) -> bool:
        """Whether the endpoint serves ``host``."""

    def origin_ok(self, origin: str | None, sec_fetch_site: str | None, peer: Peer) -> bool:
        """Whether ``origin`` may use the endpoint."""


def lane_manager(endpoint: LaneEndpoint, request: web.Request) -> Any:
    """aiohttp's server (its maker of connection handlers) if this connection may take a lane.

    ``request`` is a ``POST`` just answered directly to a live session of this
    process. None where someone could tell the difference (the module's
    text), or where aiohttp still holds a request the client sent ahead.
    """
    opts = endpoint.options
    if (
        endpoint.authorize is not None
        or opts.allowed_origins is not None
        or endpoint.shutting_down
        or "?" in request.raw_path
        or not request.raw_path.isascii()
        or request.remote is None
    ):
        return None
    inner = request.protocol
    access = getattr(inner, "access_logger", None)
    if (access is not None and access.enabled) or getattr(inner, "_messages", True):
        return None
    transport = request.transport
    if transport is None or transport.is_closing() or transport.get_write_buffer_size():
        return None
    return getattr(inner, "_manager", None)


def enter(
    endpoint: LaneEndpoint, request: web.Request, answer: bytes, manager: Any
) -> web.StreamResponse:
    """Write ``answer`` (the request's whole answer) and keep the connection on a lane.

    Called from the request's task; what it returns goes back to aiohttp.
    """
    transport = request.transport
    assert transport is not None  # lane_manager checked
    inner = transport.get_protocol()
    lane = PostLane(endpoint, transport, manager, request)
    transport.set_protocol(lane)
    release(inner, transport)
    endpoint.post_lanes.add(lane)
    transport.write(answer)
    if not transport.is_closing():  # else the transport tells the lane it is lost
        lane.start()
    return DETACHED


class _Post:
    """One ``POST`` a lane may answer: what the endpoint reads of it (never changed once read)."""

    __slots__ = ("connection", "cookie", "encoding", "forwarded", "host", "origin", "site", "tab")

    def __init__(self) -> None:
        self.host = ""
        self.cookie: str | None = None
        self.origin: str | None = None
        self.site: str | None = None
        self.tab: str | None = None
        self.encoding: str | None = None
        self.connection: str | None = None
        self.forwarded = False  # a proxy's header: read only from a trusted proxy


def read_post(
    buffer: bytes | bytearray,
    request_line: bytes,
    head_max: int = _HEAD_MAX,
    headers_max: int = _HEADERS_MAX,
) -> tuple[_Post, int, int] | None:
    """The ``POST`` at the start of ``buffer``, its body's start and end; None if not plain.

    ``request_line`` is the whole first line the lane answers, with its CRLF.
    None also when the request has not arrived whole (aiohttp waits for it),
    or its head is longer than ``head_max`` or has ``headers_max`` lines or more.
    """
    if not buffer.startswith(request_line):
        return None
    end = buffer.find(b"\r\n\r\n", 0, head_max + 4)
    if end < 0:
        return None
    head = bytes(buffer[len(request_line) : end])
    known = _HEADS.get(head)  # a keep-alive client sends the same head again and again
    if known is None:
        known = _read_head(head)
        if known is None:
            return None
        if len(head) <= _HEAD_MEMO_LENGTH:
            if len(_HEADS) >= _HEAD_MEMO_SIZE:
                _HEADS.clear()  # many heads: not worth keeping
            _HEADS[head] = known
    post, length, lines = known
    if lines >= headers_max:
        return None
    start = end + 4
    if len(buffer) < start + length:
        return None
    return post, start, start + length


#: What :func:`_read_head` made of a head (short ones only), so that each is read once.
_HEADS: dict[bytes, tuple[_Post, int, int]] = {}
_HEAD_MEMO_SIZE = 1024
_HEAD_MEMO_LENGTH = 2048


def _read_head(head: bytes) -> tuple[_Post, int, int] | None:
    """What the lane reads of a ``POST``'s headers, its body's length, and its line count."""
    if not _HEADERS.fullmatch(head):
        return None
    lines = head.split(b"\r\n")
    post = _Post()
    seen: set[bytes] = set()
    length = -1
    for line in lines:
        name, _, raw = line.partition(b":")
        name = name.lower()
        if name not in _ONCE:
            continue
        if name in seen:
            return None
        seen.add(name)
        if name not in _READ:
            continue
        value = raw.strip(b" \t").decode("ascii")
        if name == b"content-length":
            if not (value.isdigit() and len(value) <= 12):
                return None
            length = int(value)
        elif name == b"host":
            post.host = value
        elif name == b"cookie":
            post.cookie = value
        elif name == b"origin":
            post.origin = value
        elif name == b"sec-fetch-site":
            post.site = value
        elif name == b"x-bullet-tab":
            post.tab = value
        elif name == b"content-encoding":
            if value.lower() != "identity":
                return None  # refused (415) by the endpoint
            post.encoding = value
        elif name == b"connection":
            if value.lower() != "keep-alive":
                return None  # closing, or anything aiohttp may read otherwise
            post.connection = value
        elif name in _FORWARDED:
            post.forwarded = True
        else:
            return None  # Transfer-Encoding, Expect, Upgrade
    if length < 0 or b"host" not in seen:
        return None  # aiohttp refuses an HTTP/1.1 request without a Host (400)
    return post, length, len(lines)


class PostLane(asyncio.Protocol):
    """The socket's protocol between one plain ``POST`` and the next request."""

    __slots__ = (
        "busy",
        "closed",
        "endpoint",
        "head_max",
        "headers_max",
        "idle_since",
        "keepalive",
        "limit",
        "loopback",
        "manager",
        "pending",
        "reading_paused",
        "remote",
        "request_line",
        "scheme",
        "timer",
        "transport",
        "trusted",
        "writing_paused",
    )

    def __init__(
        self,
        endpoint: LaneEndpoint,
        transport: asyncio.Transport,
        manager: Any,
        request: web.Request,
    ) -> None:
        self.endpoint = endpoint
        self.transport = transport
        self.manager = manager
        # What stays true of every request on this connection.
        self.request_line = b"POST " + request.raw_path.encode("ascii") + b" HTTP/1.1\r\n"
        self.scheme = request.scheme
        self.remote = request.remote
        self.trusted = request.remote in endpoint.trusted_proxies
        self.loopback = endpoint.on_loopback(transport)
        self.limit = max_utf8_bytes(endpoint.options.max_message_size)
        inner = request.protocol
        self.keepalive: float = getattr(inner, "keepalive_timeout", 0.0) or 0.0
        self.head_max = min(
            _HEAD_MAX,
            getattr(inner, "max_line_size", 0) or _HEAD_MAX,
            getattr(inner, "max_field_size", 0) or _HEAD_MAX,
        )
        self.headers_max = min(_HEADERS_MAX, getattr(inner, "max_headers", 0) or _HEADERS_MAX)
        self.pending = bytearray()
        self.busy = False
        self.closed = False
        self.reading_paused = False
        self.writing_paused = False
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Wait for the client's next request (the keep-alive clock starts now)."""
        loop = asyncio.get_running_loop()
        self.idle_since = loop.time()
        if self.keepalive > 0:
            self.timer = loop.call_at(self.idle_since + self.keepalive, self._check_idle)

    def close_if_idle(self) -> None:
        """The endpoint stops: an idle connection closes now, a busy one after its answer."""
        if not self.busy:
            self.transport.close()

    # --- asyncio.Protocol ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.pending += data
        if not self.busy:
            self._advance()
        if len(self.pending) > _PENDING_MAX and not self.reading_paused:
            self.reading_paused = True  # waiting on an answer, or on the client reading one
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.endpoint.post_lanes.discard(self)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if not self.busy and not self.closed:
            self._advance()

    # --- requests ------------------------------------------------------------

    def _advance(self) -> None:
        """Answer the next request if it is one for the lane; else hand the connection back."""
        if self.writing_paused or self.closed or not self.pending:
            return
        endpoint = self.endpoint
        if endpoint.shutting_down:
            self._hand_back()  # aiohttp answers it (503) or closes
            return
        found = read_post(self.pending, self.request_line, self.head_max, self.headers_max)
        if found is None:
            self._hand_back()
            return
        post, start, end = found
        conn, text = self._admit(post, bytes(self.pending[start:end]))
        if conn is None:
            self._hand_back()
            return
        del self.pending[:end]
        if self.reading_paused and len(self.pending) <= _PENDING_MAX:
            self.reading_paused = False
            self.transport.resume_reading()
        endpoint.hub.recorder.message_in("send")
        self.busy = True
        asyncio.get_running_loop().create_task(self._answer(conn, text))

    def _admit(self, post: _Post, body: bytes) -> tuple[Connection | None, str]:
        """The live session and the message, if the endpoint would answer this ``POST`` so.

        Spends the ``POST`` rate tokens only when everything else agrees.
        """
        endpoint = self.endpoint
        if post.forwarded and self.trusted:
            return None, ""  # the endpoint believes these headers: it resolves them
        peer = endpoint.direct_peer(self.scheme, post.host, self.remote)
        if not endpoint.host_served(post.host, self.loopback):
            return None, ""
        if not endpoint.origin_ok(post.origin, post.site, peer):
            return None, ""
        if len(body) > self.limit:
            return None, ""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None, ""
        if not text or exceeds(text, endpoint.options.max_message_size):
            return None, ""
        tab = well_formed_tab(post.tab)
        cookie_name = endpoint.options.cookie_name
        if tab is not None:
            cookie_name = f"{cookie_name}.{tab}"
        session_id = plain_cookie(post.cookie, cookie_name)
        if not session_id or session_id is NEEDS_PARSER:
            return None, ""
        conn = endpoint.registry.get(session_id)
        if conn is None or conn.closed:
            return None, ""
        per_session, per_address = endpoint.post_limits
        if per_session is not None or per_address is not None:
            now = asyncio.get_running_loop().time()
            address = peer.client or "-"
            if (per_session is not None and not per_session.would_allow(session_id, now)) or (
                per_address is not None and not per_address.would_allow(address, now)
            ):
                return None, ""  # refused there, as it would be here
            if per_session is not None:
                per_session.allow(session_id, now)
            if per_address is not None:
                per_address.allow(address, now)
        return conn, text

    async def _answer(self, conn: Connection, text: str) -> None:
        transport = self.transport
        try:
            reply = await conn.handle_message(text)
            if reply:
                self.endpoint.hub.recorder.message_out("send")
                answer = ok_bytes(xhr_body(reply))
            else:
                answer = no_content_bytes()
            if not transport.is_closing():
                transport.write(answer)
        except Exception:
            logger.exception("post lane failed")
            transport.abort()
            return
        finally:
            self.busy = False
        if transport.is_closing():
            return
        if self.endpoint.shutting_down and not self.pending:
            transport.close()
            return
        self.idle_since = asyncio.get_running_loop().time()
        self._advance()

    def _check_idle(self) -> None:
        """Close after ``keepalive`` seconds without a request, as aiohttp would."""
        self.timer = None
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.busy or self.pending:
            due = now + self.keepalive  # not idle: the clock starts again after the answer
        else:
            due = self.idle_since + self.keepalive
            if now >= due:
                self.transport.close()
                return
        self.timer = loop.call_at(due, self._check_idle)

    def _hand_back(self) -> None:
        """The connection goes back to aiohttp with what the client sent."""
        transport = self.transport
        self.closed = True  # for the lane: the socket is aiohttp's now
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.endpoint.post_lanes.discard(self)
        handler = self.manager()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.reading_paused:
            transport.resume_reading()
        pending, self.pending = bytes(self.pending), bytearray()
        if pending:
            handler.data_received(pending)
