"""Every error bullet_py raises, under one root.

BulletError
├── ProtocolError        the peer broke the wire contract; carries the HTTP status to answer
├── CodecError
│   ├── DecodeError      a message could not be read as a term (carries a reason atom)
│   └── EncodeError      a Python value cannot be written for a BERT-JS page
├── SessionError
│   ├── SessionNotFound
│   └── SessionClosed
├── RouteError           a Stream action or model the server does not know
└── BackendError         the shared backend (e.g. Redis) failed
"""

from __future__ import annotations


class BulletError(Exception):
    """Root of every bullet_py error."""


class ProtocolError(BulletError):
    """The peer sent something the wire contract forbids.

    ``status_hint`` is the HTTP status a server should answer with.
    """

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


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


class SessionClosed(SessionError):
    """The session has already ended."""


class RouteError(BulletError):
    """A Stream action, model or method nobody registered."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BackendError(BulletError):
    """The shared session/broker backend failed."""
