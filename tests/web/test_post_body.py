"""How a POST's body is read: whole and at once when it came with the headers, else as it comes.

The quick way rests on aiohttp's ``StreamReader`` (``is_eof()`` once the
parser has the whole body, ``read_nowait()`` then returns all of it); the
first test pins that, so an aiohttp that changes it fails here, not in
production. The body limits are the same either way.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from bullet_py.web import polling
from tests.helpers import POST_HEADERS, make_app


def _post(body: bytes, headers: dict[str, str] | None = None, *, length: bool = True) -> bytes:
    lines = ["POST /bullet HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in {**POST_HEADERS, **(headers or {})}.items()]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 5)
    return int(status_line.split()[1]), headers, body


async def test_aiohttp_has_a_small_post_whole_before_the_handler_runs(aiohttp_server):
    seen: list[tuple[bool, bytes]] = []

    async def view(request: web.Request) -> web.Response:
        content = request.content
        seen.append((content.is_eof(), content.read_nowait() if content.is_eof() else b""))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/bullet", view)
    server = await aiohttp_server(app)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(_post(b"hello"))  # headers and body in one write
        status, _, _ = await _answer(reader)
    finally:
        writer.close()
    assert status == 204
    assert seen == [(True, b"hello")]


async def _serve(aiohttp_server, **options):
    app, _ = make_app(**options)
    server = await aiohttp_server(app)
    return await asyncio.open_connection("127.0.0.1", server.port)


async def test_a_whole_body_is_read_without_waiting(aiohttp_server, monkeypatch):
    async def must_not_wait(*_: object) -> bytes:
        raise AssertionError("a body that came whole was read the slow way")

    monkeypatch.setattr(polling, "_read_body", must_not_wait)
    reader, writer = await _serve(aiohttp_server)
    try:
        writer.write(_post("héllo".encode()))
        status, headers, body = await _answer(reader)
        writer.write(_post(b"again"))  # keep-alive: the next one too
        again = await _answer(reader)
    finally:
        writer.close()
    assert (status, body) == (200, "héllo".encode())
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert again[0] == 200 and again[2] == b"again"


async def test_a_body_that_comes_after_the_headers_is_awaited(aiohttp_server, monkeypatch):
    waiting = asyncio.Event()
    read_body = polling._read_body

    async def spy(*args: object) -> bytes:
        waiting.set()
        return await read_body(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(polling, "_read_body", spy)
    reader, writer = await _serve(aiohttp_server)
    try:
        request = _post(b"abcde")
        writer.write(request[:-3])  # the headers and "ab"
        await asyncio.wait_for(waiting.wait(), 5)  # the server waits for the rest
        writer.write(request[-3:])
        status, _, body = await _answer(reader)
    finally:
        writer.close()
    assert (status, body) == (200, b"abcde")


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_whole_body_over_the_limit_is_refused_and_the_connection_closed(
    aiohttp_server, chunked
):
    reader, writer = await _serve(aiohttp_server, max_message_size=10)
    body = b"x" * 100  # over 3 * 10 + 4 UTF-8 bytes
    if chunked:  # no Content-Length to refuse it by: the body's own size does
        request = _post(
            b"64\r\n" + body + b"\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"}, length=False
        )
    else:
        request = _post(body)
    try:
        writer.write(request)
        status, headers, _ = await _answer(reader)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
    finally:
        writer.close()
    assert status == 413
    assert headers["connection"] == "close"


async def test_a_whole_body_that_is_not_utf8_is_refused(aiohttp_server):
    reader, writer = await _serve(aiohttp_server)
    try:
        writer.write(_post(b"\xff\xfe"))
        status, _, body = await _answer(reader)
    finally:
        writer.close()
    assert (status, body) == (400, b"body is not UTF-8")


def test_a_cookie_header_read_again_gives_the_same_answer_for_each_name():
    """read_cookie remembers what it found in a header; per header and per name."""
    from aiohttp.test_utils import make_mocked_request

    from bullet_py.web.exchange import read_cookie

    def read(header: str, name: str) -> str | None:
        return read_cookie(make_mocked_request("POST", "/", headers={"Cookie": header}), name)

    header = "a=1; bullet_sid=abc; bullet_sid.tab12345=def"
    for _ in range(2):  # the second round is answered from memory
        assert read(header, "bullet_sid") == "abc"
        assert read(header, "bullet_sid.tab12345") == "def"
        assert read(header, "bullet_si") is None
        assert read("bullet_sid=xyz", "bullet_sid") == "xyz"
        assert read('bullet_sid="q"', "bullet_sid") == "q"  # quoted: aiohttp's parser
