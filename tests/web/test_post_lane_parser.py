"""What a post lane reads of a request, aiohttp reads the same (a differential check).

Requests are made from the original client's POST by random edits (case,
spacing, stray bytes, repeated, removed or folded lines, odd lengths). Every
one the lane would answer itself must parse in aiohttp's own request parser
(the one its connection handler uses) without error, as one keep-alive
``POST`` to the same path with the same header values and body. No socket.
"""

from __future__ import annotations

import asyncio
import random

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpRequestParser
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from bullet_py.web.postlane import read_post

_LINE = b"POST /bullet HTTP/1.1\r\n"
_BASE = [
    b"Host: 127.0.0.1:8080",
    b"Connection: keep-alive",
    b"Content-Length: 5",
    b"Content-Type: application/x-www-form-urlencoded; charset=UTF-8",
    b"X-Socket-Transport: xhrPolling",
    b"X-Requested-With: XMLHttpRequest",
    b"Origin: http://127.0.0.1:8080",
    b"Sec-Fetch-Site: same-origin",
    b"Cookie: a=1; bullet_sid=abcdefghijklmnopqrstuvwxyz012345",
    b"X-Bullet-Tab: tab-0123456789",
]
_EXTRA = [
    b"Content-Encoding: identity",
    b"Transfer-Encoding: chunked",
    b"Expect: 100-continue",
    b"Upgrade: websocket",
    b"Connection: close",
    b"Content-Length: 5",
    b"Content-Length: 6",
    b"X-Forwarded-For: 10.0.0.1",
    b" folded",
    b"\tfolded",
    b"NoColon",
    b": empty name",
    b"Bad Name: x",
    b"X-Empty:",
]
_STRAY = [b"\x00", b"\r", b"\n", b"\t", b" ", b":", b"\x7f", b"\xc3\xa9", b'"', b",", b"\x01"]
_LENGTHS = [b"5", b"05", b"+5", b"-5", b"5 ", b" 5", b"5.0", b"0x5", b"", b"99999999999999"]


def _edit(rng: random.Random) -> bytes:
    lines = list(_BASE)
    for _ in range(rng.randint(0, 3)):
        kind = rng.randrange(7)
        i = rng.randrange(len(lines)) if lines else 0
        if kind == 0 and lines:
            name, _, value = lines[i].partition(b":")
            lines[i] = (
                b"".join(rng.choice((c.upper(), c.lower())) for c in (bytes([b]) for b in name))
                + b":"
                + value
            )
        elif kind == 1 and lines:
            name, _, value = lines[i].partition(b":")
            pad = rng.choice((b"", b" ", b"  ", b"\t", b" \t "))
            lines[i] = name + b":" + pad + value.strip() + rng.choice((b"", b" ", b"\t"))
        elif kind == 2 and lines:
            at = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:at] + rng.choice(_STRAY) + lines[i][at:]
        elif kind == 3:
            lines.insert(i, rng.choice(_EXTRA))
        elif kind == 4 and lines:
            del lines[i]
        elif kind == 5:
            lines = [
                b"Content-Length: " + rng.choice(_LENGTHS)
                if line.lower().startswith(b"content-length:")
                else line
                for line in lines
            ]
        elif kind == 6 and lines:
            lines.append(lines[i])
    return _LINE + b"\r\n".join(lines) + b"\r\n\r\nhello"


def _header(headers: object, name: str) -> str | None:
    return headers.get(name)  # type: ignore[attr-defined]


async def test_what_the_lane_reads_aiohttp_reads_the_same() -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(20261203)
    answered = 0
    for _ in range(4000):
        request = _edit(rng)
        found = read_post(request, _LINE)
        if found is None:
            continue  # aiohttp's, whatever it makes of it
        answered += 1
        post, start, end = found
        parser = HttpRequestParser(
            BaseProtocol(loop),
            loop,
            2**16,
            max_line_size=8190,
            max_field_size=8190,
            max_headers=128,
            payload_exception=RequestPayloadError,
        )
        try:
            messages, upgraded, _ = parser.feed_data(request)
        except HttpProcessingError as exc:
            raise AssertionError(f"the lane answers what aiohttp refuses: {request!r}") from exc
        assert len(messages) == 1 and not upgraded, request
        message, payload = messages[0]
        assert (message.method, message.path, message.version) == ("POST", "/bullet", (1, 1))
        assert not message.should_close and not message.chunked and not message.upgrade, request
        headers = message.headers
        assert (_header(headers, "Host") or "") == post.host, request
        assert _header(headers, "Cookie") == post.cookie, request
        assert _header(headers, "Origin") == post.origin, request
        assert _header(headers, "Sec-Fetch-Site") == post.site, request
        assert _header(headers, "X-Bullet-Tab") == post.tab, request
        assert _header(headers, "Content-Encoding") == post.encoding, request
        assert int(headers["Content-Length"]) == end - start
        assert payload.read_nowait() == request[start:end]
        parser.feed_eof()
    assert answered >= 1000  # about half the edits stay plain: this checks something
