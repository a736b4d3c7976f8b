"""Event-stream framing, without I/O.

A message becomes one event of the default type: its lines (split at LF; see
below) each on a ``data: `` line, then a blank line. No ``id``, ``event`` or
``retry`` field is ever written, so message text cannot inject one.

An event stream cannot carry CR: the browser turns CR and CRLF into LF. So a
message holding CR is never framed (:func:`can_carry` is False) and the glue
moves the session to long polling instead. An empty message cannot travel
either: the browser drops an event with empty data.
"""

from __future__ import annotations

from .text import utf8

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

KEEPALIVE = b": keepalive\n\n"

# For a client that counts what it receives (the project's bullet.js): the
# first event of a stream says whether it resumed the session or began a new
# one. A named event: the original client listens to default events only.
RESUMED_EVENT = b"event: bullet\ndata: resumed\n\n"
FRESH_EVENT = b"event: bullet\ndata: fresh\n\n"


def can_carry(message: str) -> bool:
    """True when the browser will hand ``message`` to the page unaltered."""
    return bool(message) and "\r" not in message


def frame(message: str) -> bytes:
    """The bytes of one event carrying ``message`` (which must satisfy can_carry)."""
    if "\n" not in message:
        return b"data: " + utf8(message) + b"\n\n"
    body = "".join(f"data: {line}\n" for line in message.split("\n"))
    return utf8(body) + b"\n"
