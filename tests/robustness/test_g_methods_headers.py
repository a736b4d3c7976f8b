"""G. Methods and headers (docs/robustness.md items 60-66), and item 34 (parser limits).

Every test here runs under both aiohttp HTTP parsers: in this process with
the one loaded (the C parser when its extension is built), and, through
``test_66_the_group_passes_under_the_pure_python_parser``, again in a child
pytest with ``AIOHTTP_NO_EXTENSIONS=1`` (the variable is read at import, so
it needs a fresh interpreter). Several aiohttp smuggling CVEs hit only one
of the two parsers.
"""

from __future__ import annotations

import os
import subprocess
import sys

import aiohttp.http_parser
import pytest

from tests.helpers import POLL_HEADERS, POST_HEADERS, wait_for
from tests.processes import ROOT
from tests.robustness.apps import echo_server
from tests.robustness.harness import LogCheck, probing
from tests.robustness.raw import (
    WS_KEY,
    RawConnection,
    RawWebSocket,
    http_request,
    ws_handshake,
)

PARSER = (
    "py"
    if aiohttp.http_parser.HttpRequestParser is aiohttp.http_parser.HttpRequestParserPy
    else "c"
)
CHILD = os.environ.get("BULLET_PARSER_CHILD") == "1"


def test_parser_backend_is_the_one_asked_for():
    expected = "py" if os.environ.get("AIOHTTP_NO_EXTENSIONS") else "c"
    assert PARSER == expected


async def ask(port: int, request: bytes) -> tuple[int, bytes, bool]:
    """Send one raw request: (status, body, whether the server then closed)."""
    conn = await RawConnection.open(port)
    try:
        head, body = await conn.request(request)
        closed = head.get("connection", "").lower() == "close" or await conn.closed_by_peer(0.5)
    finally:
        await conn.close()
    return head.status, body, closed


def nothing_initialised(srv) -> bool:  # type: ignore[no-untyped-def]
    registry = srv.endpoint.registry
    return not srv.events and registry.pending_count == 0 and len(registry) == 0


# --- 60 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "CONNECT", "get"]
)
async def test_60_other_methods_are_405_and_initialise_nothing(aiohttp_server, method):
    srv = await echo_server(aiohttp_server)
    conn = await RawConnection.open(srv.port)
    head, _ = await conn.request(http_request(method, body=b"x" if method != "get" else b""))
    await conn.close()
    if method == "CONNECT":
        # aiohttp reads a CONNECT target as host:port, so the route never matches.
        assert head.status in (404, 405)
    elif method == "get" and PARSER == "py":
        # The pure-Python parser upper-cases the method: it is a GET (a poll) then.
        assert head.status == 204
        return
    elif method == "get":
        assert head.status == 400  # the C parser refuses a lowercase method
    else:
        assert head.status == 405
        assert head.get("allow") == "GET, POST"
    assert nothing_initialised(srv)


# --- 61 ---------------------------------------------------------------------------


async def test_61_head_never_parks_or_dequeues(aiohttp_server):
    srv = await echo_server(aiohttp_server, poll_timeout=30, session_idle_timeout=30)
    conn = await RawConnection.open(srv.port)
    head, _ = await conn.request(http_request("GET", headers=POLL_HEADERS))
    sid = (head.get("set-cookie") or "").split(";")[0].split("=", 1)[1]
    cookie = {"Cookie": f"bullet_sid={sid}"}
    head, _ = await conn.request(
        http_request("POST", headers={**POST_HEADERS, **cookie}, body=b"noreply")
    )
    assert head.status == 204
    session = srv.endpoint.registry.get(sid)
    assert session.send("M")
    head, body = await conn.request(http_request("HEAD", headers={**POLL_HEADERS, **cookie}))
    assert head.status == 405 and body == b""
    assert list(session.outbox) == ["M"] and session.parked_polls == 0
    head, body = await conn.request(http_request("GET", headers={**POLL_HEADERS, **cookie}))
    assert head.status == 200 and body == b"M"
    await conn.close()


# --- 62, 63 ------------------------------------------------------------------------


@pytest.mark.parametrize("upgrade", ["h2c", "foo", "websocket, foo", ""])
async def test_62_other_upgrades_are_501_with_an_empty_body(aiohttp_server, upgrade):
    srv = await echo_server(aiohttp_server)
    headers = [("Upgrade", upgrade), ("Connection", "Upgrade")]
    status, body, _ = await ask(srv.port, http_request("GET", headers=headers))
    assert status == 501 and body == b""
    assert nothing_initialised(srv)


@pytest.mark.parametrize("token", ["WebSocket", "WEBSOCKET", "websocket"])
async def test_63_upgrade_token_in_any_case_is_a_websocket(aiohttp_server, token):
    srv = await echo_server(aiohttp_server)
    ws = await RawWebSocket.connect(srv.port, extra={"Upgrade": token})
    await ws.send_text("hi")
    assert await ws.recv_text() == "hi"
    await ws.close()


# --- 64 ---------------------------------------------------------------------------


async def test_64_broken_handshakes_get_4xx_never_a_crash(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server)
    base = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": WS_KEY,
        "Sec-WebSocket-Version": "13",
    }
    no_key = {k: v for k, v in base.items() if k != "Sec-WebSocket-Key"}
    cases = [
        (http_request("GET", headers=no_key), 400),
        (http_request("GET", headers={**base, "Sec-WebSocket-Version": "8"}), 426),
        (http_request("GET", "/elsewhere", headers=base), 404),
        (http_request("GET", headers={**base, "Sec-WebSocket-Key": "short"}), 400),
    ]
    for request, expected in cases:
        status, _, _ = await ask(srv.port, request)
        assert status == expected
    assert nothing_initialised(srv)
    logs.assert_no_traceback()


async def test_64_an_upgrade_request_body_is_never_read_as_a_second_request(aiohttp_server):
    srv = await echo_server(aiohttp_server)
    smuggled = http_request("POST", headers=POST_HEADERS, body=b"smuggled")
    request = ws_handshake(extra={"Content-Length": str(len(smuggled))}) + smuggled
    conn = await RawConnection.open(srv.port)
    await conn.send(request)
    head = await conn.read_head()
    if head.status == 101:
        ws = RawWebSocket(conn, head)
        # The declared body is swallowed (or, read as frames, a protocol error).
        await ws.send_text("after")
        frame = await ws.recv()
        assert frame is None or frame.payload == b"after" or frame.close_code == 1002
    else:
        assert 400 <= head.status < 500
    await conn.close()
    messages = [e[2] for e in srv.events if e[0] == "message"]
    assert messages in ([], ["after"])  # the smuggled POST never ran
    await wait_for(lambda: srv.closes() == srv.opens())


# --- 65 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "mode"),
    [
        ("text/event-stream", "stream"),
        ("TEXT/EVENT-STREAM", "stream"),
        ("text/event-stream;q=0", "stream"),  # q-values ignored, as Bullet does
        ("text/plain, */*; q=0.01", "poll"),  # the original client's poll
        ("*/*", "poll"),
        ("text/*", "poll"),
        ("text/plain, " + "a" * 8000, "poll"),
        (";;;,,", "poll"),
        ("", "poll"),
    ],
)
async def test_65_accept_variants_choose_the_mode_deterministically(aiohttp_server, accept, mode):
    srv = await echo_server(aiohttp_server)
    conn = await RawConnection.open(srv.port)
    await conn.send(http_request("GET", headers={"Accept": accept}))
    head = await conn.read_head()
    if mode == "stream":
        assert head.status == 200
        assert (head.get("content-type") or "").startswith("text/event-stream")
    else:
        assert head.status == 204  # a first poll: answered at once with a cookie
        assert head.get("set-cookie")
    await conn.close()


# --- 66 ---------------------------------------------------------------------------

SMUGGLING = {
    "content-length-and-transfer-encoding": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "duplicate-content-length": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    ),
    "duplicate-equal-content-length": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
    ),
    "content-length-with-sign": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"
    ),
    "xchunked": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "chunked-then-identity": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "space-before-colon": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "duplicate-transfer-encoding": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ),
    "bare-lf": b"POST /bullet HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello",
    "bare-lf-after-chunk-size": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\nhello\r\n0\r\n\r\n"
    ),
    "lf-in-chunk-extension": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;a=b\nc\r\nhello\r\n0\r\n\r\n"
    ),
    "hex-prefix-chunk-size": (
        b"POST /bullet HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0x5\r\nhello\r\n0\r\n\r\n"
    ),
    "duplicate-host": b"GET /bullet HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
}


@pytest.mark.parametrize("name", list(SMUGGLING))
async def test_66_smuggling_attempts_are_400_and_the_connection_closed(
    aiohttp_server, caplog, name
):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server)
    # A second, innocent request follows on the same connection: it must not be served.
    follow = http_request("POST", headers=POST_HEADERS, body=b"second")
    status, _, closed = await ask(srv.port, SMUGGLING[name] + follow)
    assert status == 400 and closed
    assert not any(e[0] == "message" for e in srv.events)
    assert logs.count("bad_http") == 1  # one structured line, no traceback
    logs.assert_no_traceback()


# --- 34 (parser limits) -----------------------------------------------------------------


LIMITS = {
    "ten-thousand-headers": (
        b"GET /bullet HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: a\r\n" % i for i in range(10_000))
        + b"\r\n"
    ),
    "one-megabyte-cookie": b"GET /bullet HTTP/1.1\r\nHost: x\r\nCookie: "
    + b"a" * (1 << 20)
    + b"\r\n\r\n",
    "hundred-kilobyte-request-line": b"GET /bullet?"
    + b"a" * 100_000
    + b" HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", list(LIMITS))
async def test_34_huge_headers_and_request_lines_are_refused_by_the_parser(
    aiohttp_server, caplog, name
):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server)
    async with probing(srv.url):
        status, _, closed = await ask(srv.port, LIMITS[name])
        assert status in (400, 431) and closed
    assert srv.opens() == 0
    assert logs.count("bad_http") == 1
    logs.assert_no_traceback()


# --- both parsers ---------------------------------------------------------------------


@pytest.mark.skipif(CHILD, reason="this is the child run already")
def test_66_the_group_passes_under_the_pure_python_parser():
    """Runs this module again with AIOHTTP_NO_EXTENSIONS=1 (read at import time)."""
    env = {**os.environ, "AIOHTTP_NO_EXTENSIONS": "1", "BULLET_PARSER_CHILD": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
