"""Structured, rate-limited log lines for rejected input and abuse.

Each rejected request or message gives one WARNING line
``event=<name> reason=<code> transport=<kind> session=<hash> length=<n>``.
Session ids never appear in clear: a short hash is enough to correlate lines.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import time

logger = logging.getLogger("bullet_py")

_WINDOW = 1.0  # seconds
_PER_WINDOW = 20  # lines of one event name per window, then a summary
_counts: dict[str, list[float]] = {}


def session_hash(session_id: str | None) -> str:
    """A short stable digest of a session id, safe to log."""
    if not session_id:
        return "-"
    return hashlib.blake2s(session_id.encode(), digest_size=6).hexdigest()


_seen: collections.OrderedDict[str, None] = collections.OrderedDict()
_SEEN_MAX = 4096


def first_time(key: str) -> bool:
    """True the first time ``key`` comes (among the last few thousand), for once-per-id lines."""
    if key in _seen:
        _seen.move_to_end(key)
        return False
    _seen[key] = None
    if len(_seen) > _SEEN_MAX:
        _seen.popitem(last=False)
    return True


def log_event(level: int, event: str, /, **fields: object) -> None:
    """Log ``event`` with ``key=value`` fields, at most ``_PER_WINDOW`` a second per event."""
    if not logger.isEnabledFor(level):
        return
    now = time.monotonic()
    window = _counts.get(event)
    if window is None or now - window[0] >= _WINDOW:
        if window is not None and window[1] > _PER_WINDOW:
            logger.log(level, "event=%s suppressed=%d", event, int(window[1]) - _PER_WINDOW)
        window = _counts[event] = [now, 0.0]
    window[1] += 1
    if window[1] > _PER_WINDOW:
        return
    text = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.log(level, "event=%s %s", event, text)


def reject(
    event: str, reason: str, *, transport: str, session_id: str | None = None, length: int = 0
) -> None:
    """The one WARNING line for a rejected input or abuse event."""
    log_event(
        logging.WARNING,
        event,
        reason=reason,
        transport=transport,
        session=session_hash(session_id),
        length=length,
    )
