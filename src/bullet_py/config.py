"""One frozen options object for an endpoint, validated when built.

Every timeout is in seconds, every size in UTF-16 code units (the unit BERT-JS
counts in) unless its name says bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Collection


class Overflow(enum.Enum):
    """What a session does when its outbound queue is full."""

    CLOSE = "close"  # end the session; the client reconnects and is told by on_close
    DROP_OLDEST = "drop_oldest"  # discard the head of the queue to make room
    DROP_NEWEST = "drop_newest"  # discard the message being pushed


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """Settings of one Bullet endpoint.

    Defaults follow the original Erlang server where it has one (60 s polls and
    streams) and are otherwise chosen to be safe for a public site.
    """

    # --- transports ---------------------------------------------------------
    websocket: bool = True
    eventsource: bool = True
    polling: bool = True

    # --- timing -------------------------------------------------------------
    poll_timeout: float = 60.0  # a parked GET answers 204 after this
    stream_lifetime: float | None = 60.0  # an event stream ends after this (None: never)
    stream_keepalive: float = 15.0  # comment line on an idle event stream
    session_idle_timeout: float = 120.0  # polling session with no request in flight
    pending_session_ttl: float = 30.0  # a cookie we issued that never came back
    ws_ping_interval: float | None = 20.0  # WebSocket ping; a peer missing the pong is dead
    ws_idle_timeout: float | None = None  # close a WebSocket with no frame for this long
    write_timeout: float = 10.0  # a stalled WebSocket or event-stream write ends the session
    handler_timeout: float | None = 30.0  # on_message/on_info longer than this is abandoned
    shutdown_timeout: float = 5.0  # how long close callbacks may take at shutdown
    body_timeout: float = 30.0  # a POST body not received whole by then: 408, connection closed

    # --- sizes and bounds ---------------------------------------------------
    max_message_size: int = 1_048_576  # code units, both directions of the client
    outbox_max_messages: int = 1_000
    outbox_max_chars: int = 8 * 1_048_576  # characters queued for one session
    overflow: Overflow = Overflow.CLOSE
    max_sessions: int = 100_000
    max_pending_sessions: int = 10_000
    max_polls_per_session: int = 2  # parked GETs of one session (two tabs are legal)
    # POSTs a second (bursts of as many) per session and per client address; None: no limit.
    # Over it: 429 with Retry-After. Generous: the original client posts one message at a time.
    # Per address is off by default: behind a proxy not in trusted_proxies, every client
    # has the proxy's address (a trusted proxy's X-Forwarded-For / Forwarded is used).
    post_rate_per_session: float | None = 200.0
    post_rate_per_address: float | None = None

    # --- resumable sessions ---------------------------------------------------
    # A connection that drops without ending its session leaves it detached for
    # session_idle_timeout; the next connection with its cookie resumes it.
    # Transports named here resume; the others end the session when they drop.
    resumable: Collection[str] = ("websocket", "eventsource", "poll")
    # A stream holding a session that another connection asks for is probed;
    # no sign of life within this many seconds means it is dead and is replaced.
    resume_probe_timeout: float = 1.0
    # What a counting client (the project's bullet.js) may miss and still get again.
    replay_max_messages: int = 1_000
    replay_max_chars: int = 1_048_576

    # --- cookies and origins -----------------------------------------------
    cookie_name: str = "bullet_sid"
    allowed_origins: Collection[str] | None = None  # None: same origin as the Host only
    allow_missing_origin: bool = True  # non-browser clients send no Origin
    # Host names served (Django's ALLOWED_HOSTS): "example.com", ".example.com" (and
    # subdomains), "*.example.com" (subdomains), "*". None: on a loopback socket only
    # loopback names (localhost, *.localhost, 127.0.0.0/8, [::1]), elsewhere any. A wrong
    # Host gets 421 before anything else. Behind a proxy, the forwarded host is checked.
    allowed_hosts: Collection[str] | None = None

    # --- reverse proxies ------------------------------------------------------
    # TCP peers whose Forwarded / X-Forwarded-For|Proto|Host headers are believed:
    # addresses or networks, "*" for any, empty for none (uvicorn's forwarded_allow_ips).
    # On a unix socket (no peer address) only "*" trusts the proxy.
    trusted_proxies: Collection[str] = ("127.0.0.0/8", "::1")

    def resumes(self, transport: str) -> bool:
        """A connection of ``transport`` that drops leaves its session to be resumed."""
        return transport in self.resumable

    def __post_init__(self) -> None:
        positive = {
            "poll_timeout": self.poll_timeout,
            "stream_keepalive": self.stream_keepalive,
            "session_idle_timeout": self.session_idle_timeout,
            "pending_session_ttl": self.pending_session_ttl,
            "write_timeout": self.write_timeout,
            "shutdown_timeout": self.shutdown_timeout,
            "body_timeout": self.body_timeout,
            "resume_probe_timeout": self.resume_probe_timeout,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for name in (
            "stream_lifetime",
            "ws_ping_interval",
            "ws_idle_timeout",
            "handler_timeout",
            "post_rate_per_session",
            "post_rate_per_address",
        ):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value!r}")
        if self.ws_idle_timeout is not None and self.ws_idle_timeout <= 20.0:
            raise ValueError("ws_idle_timeout must exceed the client's 20 s heartbeat")
        for name in (
            "max_message_size",
            "outbox_max_messages",
            "outbox_max_chars",
            "max_sessions",
            "max_pending_sessions",
            "replay_max_messages",
            "replay_max_chars",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_polls_per_session < 1:
            raise ValueError("max_polls_per_session must be >= 1")
        if not (self.websocket or self.eventsource or self.polling):
            raise ValueError("at least one transport must be enabled")
        if not self.cookie_name or not self.cookie_name.isascii():
            raise ValueError("cookie_name must be a non-empty ASCII token")
        unknown = set(self.resumable) - {"websocket", "eventsource", "poll"}
        if unknown:
            raise ValueError(f"resumable names unknown transports: {sorted(unknown)}")
        object.__setattr__(self, "resumable", frozenset(self.resumable))
        for name in ("allowed_origins", "allowed_hosts", "trusted_proxies"):
            if isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a collection of strings, not one string")
        for entry in self.trusted_proxies:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry.strip(), strict=False)
                except ValueError:
                    raise ValueError(
                        f"trusted_proxies: {entry!r} is not an address, a network or '*'"
                    ) from None
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
        if self.allowed_hosts is not None:
            object.__setattr__(
                self, "allowed_hosts", frozenset(h.strip().lower() for h in self.allowed_hosts)
            )
        if self.allowed_origins is not None:
            object.__setattr__(
                self, "allowed_origins", frozenset(o.lower() for o in self.allowed_origins)
            )
