"""Which transport a request at the endpoint asks for (Bullet's ``bullet_handler``).

The table, in the order it is applied:

======================================  ===============================
request                                 decision
======================================  ===============================
``Upgrade`` with the token websocket    WEBSOCKET (501 if disabled)
any other ``Upgrade`` (even empty)      REJECT 501
``GET``, Accept lists text/event-stream EVENTSOURCE (406 if disabled)
``GET`` otherwise                       POLL (405 if polling disabled)
``POST``                                SEND
``OPTIONS`` from an allowed origin      PREFLIGHT (decided by the glue)
anything else, ``HEAD`` included        REJECT 405
======================================  ===============================

Like Bullet, the first ``text/event-stream`` entry of ``Accept`` decides and
q-values are ignored; the match is case-insensitive. A malformed ``Accept``
simply does not list the event-stream type, so it means a long poll.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping


class Transport(enum.Enum):
    """The kind of exchange one request starts."""

    WEBSOCKET = "websocket"
    EVENTSOURCE = "eventsource"
    POLL = "poll"
    SEND = "send"  # a POST carrying one client message
    PREFLIGHT = "preflight"
    REJECT = "reject"


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    transport: Transport
    status: int = 200  # for REJECT: the status to answer with


ALLOW_HEADER = "GET, POST"

# Decisions are immutable: made once, not per request.
_WEBSOCKET = Decision(Transport.WEBSOCKET)
_EVENTSOURCE = Decision(Transport.EVENTSOURCE)
_POLL = Decision(Transport.POLL)
_SEND = Decision(Transport.SEND)
_PREFLIGHT = Decision(Transport.PREFLIGHT)
_REJECT_405 = Decision(Transport.REJECT, 405)
_REJECT_406 = Decision(Transport.REJECT, 406)
_REJECT_501 = Decision(Transport.REJECT, 501)


def accepts_event_stream(accept: str) -> bool:
    """True when an ``Accept`` value lists ``text/event-stream`` (any case, any q)."""
    if "event-stream" not in accept.lower():
        return False
    for entry in accept.split(","):
        media = entry.split(";", 1)[0].strip().lower()
        if media == "text/event-stream":
            return True
    return False


def is_websocket_upgrade(upgrade: str) -> bool:
    """True only for an ``Upgrade`` that names websocket and nothing else."""
    return upgrade.strip().lower() == "websocket"


def select_transport(
    method: str,
    headers: Mapping[str, str],
    *,
    websocket: bool = True,
    eventsource: bool = True,
    polling: bool = True,
) -> Decision:
    """Decide what a request is; ``headers`` must be case-insensitive."""
    upgrade = headers.get("Upgrade")
    if upgrade is not None:
        if is_websocket_upgrade(upgrade) and method == "GET":
            return _WEBSOCKET if websocket else _REJECT_501
        return _REJECT_501
    if method == "POST":
        return _SEND if polling or eventsource else _REJECT_405
    if method == "GET":
        if accepts_event_stream(headers.get("Accept", "")):
            return _EVENTSOURCE if eventsource else _REJECT_406
        return _POLL if polling else _REJECT_405
    if method == "OPTIONS":
        return _PREFLIGHT
    return _REJECT_405
