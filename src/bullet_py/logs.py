"""Structured, rate-limited log lines, and the counts a metrics exporter may keep.

Each rejected request or message gives one WARNING line
``event=<name> reason=<code> transport=<kind> session=<hash> length=<n>``.
Session ids never appear in clear: a short hash is enough to correlate lines.
The same fields ride on the record (``record.bullet``, a dict with ``event``
first), so :class:`JsonFormatter` or any structured handler gets them as keys.

:class:`Recorder` is what the sessions and transports report counts to. The
one used unless :mod:`bullet_py.metrics` replaces it does nothing, so with
metrics off a hot path pays one attribute lookup and an empty call.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import time
from collections.abc import Callable

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


# The LogRecord attribute holding a line's fields: one name, which no
# LogRecord attribute has, so no field can collide with one.
FIELDS = "bullet"

# Called with every event's name before any filtering (level, rate): exact counts.
event_hooks: list[Callable[[str], None]] = []


def log_event(level: int, event: str, /, **fields: object) -> None:
    """Log ``event`` with ``key=value`` fields, at most ``_PER_WINDOW`` a second per event."""
    for hook in event_hooks:
        hook(event)
    if not logger.isEnabledFor(level):
        return
    now = time.monotonic()
    window = _counts.get(event)
    if window is None or now - window[0] >= _WINDOW:
        if window is not None and window[1] > _PER_WINDOW:
            suppressed = int(window[1]) - _PER_WINDOW
            logger.log(
                level,
                "event=%s suppressed=%d",
                event,
                suppressed,
                extra={FIELDS: {"event": event, "suppressed": suppressed}},
            )
        window = _counts[event] = [now, 0.0]
    window[1] += 1
    if window[1] > _PER_WINDOW:
        return
    text = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.log(level, "event=%s %s", event, text, extra={FIELDS: {"event": event, **fields}})


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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the line's fields.

    A field named like one of the first four keys is written ``field_<name>``.
    Values JSON cannot hold are written as their ``str()``.
    """

    _BASE = frozenset({"time", "level", "logger", "message"})

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line[f"field_{key}" if key in self._BASE else str(key)] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """UTC, ISO 8601 with milliseconds: what log pipelines parse without a hint."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class Recorder:
    """Where sessions and transports report what metrics count; this one keeps nothing.

    ``transport`` is a :class:`bullet_py.core.negotiate.Transport` value
    (``"websocket"``, ``"eventsource"``, ``"poll"``, ``"send"``).
    ``times_handlers`` tells callers whether to time handler calls at all.
    """

    times_handlers = False

    def opened(self, transport: str) -> None:
        """A session was made."""

    def closed(self, transport: str) -> None:
        """A session ended (``on_close`` is about to run); its last transport."""

    def message_in(self, transport: str) -> None:
        """A client message arrived."""

    def message_out(self, transport: str, n: int = 1) -> None:
        """``n`` messages were written to a client."""

    def refused(self, status: int, reason: str) -> None:
        """A request was refused with ``status``."""

    def overflow(self, policy: str) -> None:
        """A session's queue was full and ``policy`` applied."""

    def handler_seconds(self, callback: str, seconds: float) -> None:
        """A handler callback took ``seconds`` (only called when ``times_handlers``)."""

    def resumed(self, transport: str) -> None:
        """A session was resumed by a reconnecting client."""


NO_RECORDER = Recorder()
