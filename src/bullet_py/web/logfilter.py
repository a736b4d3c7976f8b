"""One structured line instead of a traceback for requests aiohttp's parser refuses.

aiohttp logs every malformed request (too many headers, a 1 MB cookie,
smuggling attempts, an unknown ``Content-Encoding``) with ``logger.exception``:
a full traceback per hostile request. Those are client faults, so they become
the usual rate-limited WARNING ``event=bad_http reason=<error> transport=http``.
Server faults (anything that is not a parser error, or a 5xx) are left alone.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

from ..logs import reject

_LOGGER = "aiohttp.server"


class ParserFaults(logging.Filter):
    """Turns aiohttp's parser-error tracebacks into one structured line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and (exc.code or 400) < 500:
            reject("bad_http", type(exc).__name__, transport="http")
            return False
        return True


def install() -> None:
    """Add the filter to aiohttp's server logger, once per process."""
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(f, ParserFaults) for f in logger.filters):
        logger.addFilter(ParserFaults())
