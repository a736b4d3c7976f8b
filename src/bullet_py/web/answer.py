"""A small text answer written to the socket in one piece, from a prebuilt head.

aiohttp makes a ``web.Response`` into bytes through a header multidict, the
``on_response_prepare`` signal, a payload writer and its bookkeeping: about a
fifth of what a whole long-poll ``POST`` costs the server. The answer nearly
every ``POST`` gets is always the same shape (200, ``text/plain;
charset=utf-8``, a short body, a keep-alive HTTP/1.1 client), so
:class:`DirectAnswer` writes the bytes aiohttp would write for it (the same
status line, headers in the same order, ``Date`` and ``Server`` included)
with one ``transport.write``.

It is used only where nobody could tell the difference (:func:`direct_allowed`):
no middleware and no ``on_response_prepare`` receiver in any application on the
route's path (they expect a real ``StreamResponse`` they may change), and a
keep-alive HTTP/1.1 request. Everything else gets a ``web.Response`` as before.
``tests/web/test_direct_answer.py`` compares the two byte for byte, so an aiohttp
that changes its answers or the calls it makes on a response fails there.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import TYPE_CHECKING, cast

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

from ..core.text import TEXT_CONTENT_TYPE

if TYPE_CHECKING:
    from aiohttp.abc import AbstractStreamWriter

_HEAD_START = f"HTTP/1.1 200 OK\r\nContent-Type: {TEXT_CONTENT_TYPE}\r\nContent-Length: "
_HEAD_END = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n"  # after the Date

_date_second = -1
_date_text = ""


def _http_date() -> str:
    """The ``Date`` header's value, made once a second (as aiohttp does)."""
    global _date_second, _date_text
    now = int(time.time())
    if now != _date_second:
        _date_text = formatdate(now, usegmt=True)
        _date_second = now
    return _date_text


def ok_bytes(body: bytes, date: str = "") -> bytes:
    """The whole ``200`` text answer aiohttp would write for ``body``, head and body.

    ``date`` is the ``Date`` header's value (now's, if not given).
    """
    head = f"{_HEAD_START}{len(body)}\r\nDate: {date or _http_date()}{_HEAD_END}"
    return head.encode("ascii") + body


def no_content_bytes() -> bytes:
    """The ``204`` aiohttp writes for ``web.Response(status=204)``."""
    return f"HTTP/1.1 204 No Content\r\nDate: {_http_date()}{_HEAD_END}".encode("ascii")


class DirectAnswer:
    """A 200 text answer that aiohttp's connection handler writes by calling ``prepare``.

    It offers what aiohttp's handler and access logger read of a response
    (``prepare``, ``write_eof``, ``keep_alive``, ``status``, ``body_length``,
    ``headers``, ``prepared``) and nothing else: it is handed back only from a
    route no middleware wraps.
    """

    __slots__ = ("_body", "_date", "_written", "prepared")

    status = 200
    reason = "OK"
    keep_alive = True
    chunked = False
    compression = False

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._date = ""
        self._written = 0
        self.prepared = False

    @property
    def body_length(self) -> int:
        """Bytes written, head included: what aiohttp's access log ``%b`` reports."""
        return self._written

    @property
    def body(self) -> bytes:
        return self._body

    @property
    def content_length(self) -> int:
        return len(self._body)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The headers as written, for an access log format that names one."""
        return CIMultiDictProxy(
            CIMultiDict(
                (
                    ("Content-Type", TEXT_CONTENT_TYPE),
                    ("Content-Length", str(len(self._body))),
                    ("Date", self._date or _http_date()),
                    ("Server", SERVER_SOFTWARE),
                )
            )
        )

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        self.prepared = True
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client left before its answer")
        self._date = _http_date()
        data = ok_bytes(self._body, self._date)
        transport.write(data)
        if transport.is_closing():
            # The send failed at once (a reset peer): the caller may put back
            # what this carried, as it does when aiohttp's writer raises.
            raise ConnectionResetError("the client left during its answer")
        self._written = len(data)
        # What aiohttp's writer does after a write: wait while the client
        # reads slower than we answer (pipelined requests), without a buffer.
        writer = request.writer
        await writer.drain()
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        """Nothing left to write: ``prepare`` wrote the whole answer."""

    def as_response(self) -> web.StreamResponse:
        """This answer where aiohttp's types want a response (it is duck-typed as one)."""
        return cast(web.StreamResponse, self)


def direct_allowed(request: web.Request) -> bool:
    """Whether a :class:`DirectAnswer` may answer ``request`` (see the module's text)."""
    if request.version != HttpVersion11 or not request.keep_alive:
        return False
    for app in request.match_info.apps:
        if app.middlewares or app.on_response_prepare:
            return False
    return True
