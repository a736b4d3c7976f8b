"""Every error bullet_py raises, under one root.

BulletError
├── ProtocolError        a request is refused; carries the HTTP status and log fields to answer
│   └── Refused          raised by an ``authorize`` hook: 401/403 before any session exists
├── CodecError
│   ├── DecodeError      a message could not be read as a term (carries a reason atom)
│   └── EncodeError      a Python value cannot be written for a BERT-JS page
├── SessionError
│   └── SessionNotFound  the session is not (or no longer) where it was looked for
└── BackendError         the shared backend (e.g. Redis) failed

Stream-layer failures are not exceptions the application sees: the router
answers them with ``{error, Reason, Detail}`` (docs/stream.md).
"""

from __future__ import annotations


class BulletError(Exception):
    """Root of every bullet_py error."""


class ProtocolError(BulletError):
    """A request the endpoint refuses: what the peer sent, a limit, or the server's state.

    Raised where the rule is checked; one place in the aiohttp glue turns it
    into the answer (``status_hint``, ``headers``, ``text``) and the one log
    line (``event``, ``reason``; no line when ``event`` is empty).
    ``close_connection`` ends the HTTP connection after the answer, leaving
    an unread request body unread.
    """

    def __init__(
        self,
        message: str = "",
        status_hint: int = 400,
        *,
        event: str = "",
        reason: str = "",
        headers: dict[str, str] | None = None,
        text: str | None = None,
        close_connection: bool = False,
        length: int = 0,
        session_id: str | None = None,
    ) -> None:
        super().__init__(message or f"{status_hint} {reason or event}".strip())
        self.status_hint = status_hint
        self.event = event
        self.reason = reason
        self.headers = headers or {}
        self.text = text
        self.close_connection = close_connection
        self.length = length
        self.session_id = session_id


class Refused(ProtocolError):
    """Raised by an endpoint's ``authorize`` hook to turn a request away (401 or 403).

    Nothing exists yet when the hook runs (no session, no pending id, no
    cookie, no WebSocket upgrade), so nothing is created. ``reason`` is a short
    code for the log line, never sent to the client; ``headers`` go with the
    answer (``WWW-Authenticate`` for a 401, say).
    """

    def __init__(
        self, status: int = 403, reason: str = "refused", *, headers: dict[str, str] | None = None
    ) -> None:
        if not 400 <= status < 500:
            raise ValueError(f"Refused status must be 4xx (401 or 403), got {status!r}")
        super().__init__(
            f"{status} {reason}", status, event="unauthorized", reason=reason[:64], headers=headers
        )


class CodecError(BulletError):
    """A term could not be converted between Python and the wire."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecodeError(CodecError):
    """Input could not be decoded. ``reason`` is a short machine-readable code."""


class EncodeError(CodecError):
    """A value cannot be encoded in a form the page can read."""


class SessionError(BulletError):
    """A session-level failure."""


class SessionNotFound(SessionError):
    """No live session has that id."""


class BackendError(BulletError):
    """The shared session/broker backend failed."""
