"""F. Cross-origin requests and sessions (docs/robustness.md items 52-59).

Already proven in tests/web (referenced in docs/robustness.md): the basic 403s
(test_endpoint.py), forged cookies on GET and the cookie attributes over plain
HTTP (test_polling.py). Here: every transport, with the invariants.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bullet_py import Options, setup
from bullet_py.codec.bert import encode
from bullet_py.logs import session_hash
from tests.helpers import FAST, POLL_HEADERS, POST_HEADERS, SSE_HEADERS, Recorder, wait_for
from tests.robustness.apps import CHARACTER, SYNC, A, echo_server, stream_server
from tests.robustness.harness import Baseline, LogCheck, probing
from tests.robustness.raw import RawConnection, http_request, ws_handshake

EVIL = "https://evil.example"
UPDATE = encode((SYNC, (A("update"), CHARACTER, [(A("level"), 99)])))


async def polling_session(s: aiohttp.ClientSession, url: str) -> str:
    """A live polling session (its cookie came back once): its id."""
    resp = await s.get(url, headers=POLL_HEADERS)
    sid = resp.cookies["bullet_sid"].value
    async with s.post(url, data=b"noreply-open", headers=POST_HEADERS) as r:
        assert r.status == 204
    return sid


def foreign_origins(port: int) -> list[str]:
    return [EVIL, "null", f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]


# --- 52 ---------------------------------------------------------------------------


async def test_52_cross_origin_websocket_with_a_session_cookie_is_403(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server)
    async with probing(srv.url):
        base = Baseline(srv.endpoint)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            sid = await polling_session(s, srv.url)
            origins = foreign_origins(srv.port)
            for origin in origins:
                conn = await RawConnection.open(srv.port)
                extra = {"Origin": origin, "Cookie": f"bullet_sid={sid}"}
                head, _ = await conn.request(ws_handshake(extra=extra))
                assert head.status == 403  # before the upgrade
                assert (
                    head.get("upgrade") is None and head.get("access-control-allow-origin") is None
                )
                await conn.close()
            # The same origin is accepted.
            async with s.ws_connect(srv.url, origin=f"http://127.0.0.1:{srv.port}") as ws:
                await ws.send_str("same-origin")
                assert (await ws.receive(timeout=5)).data == "same-origin"
        await base.back()
    assert logs.count("cross_origin") == len(origins)
    # The polling session, nothing else: the same-origin socket resumed it (its cookie).
    assert srv.opens() == 1
    logs.assert_no_traceback()


async def test_52_missing_origin_is_a_setting(aiohttp_server):
    for allow, status in ((True, 101), (False, 403)):
        srv = await echo_server(aiohttp_server, allow_missing_origin=allow)
        conn = await RawConnection.open(srv.port)
        await conn.send(ws_handshake())  # no Origin: a non-browser client
        assert (await conn.read_head()).status == status
        await conn.close()


# --- 53 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=UTF-8",
        "text/plain",
        "multipart/form-data; boundary=x",
    ],
)
@pytest.mark.parametrize("with_cookie", [False, True], ids=["no-cookie", "cookie"])
async def test_53_cross_origin_simple_post_is_403_before_decoding(
    aiohttp_server, caplog, content_type, with_cookie
):
    logs = LogCheck(caplog)
    srv = await stream_server(aiohttp_server)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        if with_cookie:
            await s.get(srv.url, headers=POLL_HEADERS)  # the jar now holds a cookie
        for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
            resp = await s.post(
                srv.url, data=UPDATE.encode(), headers={**headers, "Content-Type": content_type}
            )
            assert resp.status == 403
            assert "Access-Control-Allow-Origin" not in resp.headers
    assert srv.calls == []  # the model was never called
    assert srv.opens() == 0
    assert logs.count("cross_origin") == 2
    assert logs.count("stream_rejected") == 0  # refused before any decoding


# --- 54 ---------------------------------------------------------------------------


async def test_54_cross_origin_poll_and_stream_are_403_and_dequeue_nothing(aiohttp_server):
    srv = await echo_server(aiohttp_server, poll_timeout=30)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        sid = await polling_session(s, srv.url)
        conn = srv.endpoint.registry.get(sid)
        assert conn.send("M1") and conn.send("M2")
        for headers in (
            {**POLL_HEADERS, "Origin": EVIL},
            {**POLL_HEADERS, "Sec-Fetch-Site": "cross-site"},
            {**SSE_HEADERS, "Origin": EVIL},
            {**SSE_HEADERS, "Sec-Fetch-Site": "cross-site"},
            {**POLL_HEADERS, "Origin": "null"},
        ):
            async with s.get(srv.url, headers=headers) as resp:
                assert resp.status == 403
                assert await resp.read() == b""
        assert list(conn.outbox) == ["M1", "M2"]  # nothing dequeued
        got = []
        for _ in range(2):
            async with s.get(srv.url, headers=POLL_HEADERS) as resp:
                got.append(await resp.text())
        assert got == ["M1", "M2"]


# --- 55 ---------------------------------------------------------------------------


async def test_55_no_response_reflects_a_foreign_origin_or_a_wildcard(aiohttp_server):
    srv = await echo_server(aiohttp_server, allowed_origins=["https://app.example"])
    requests = [
        ("OPTIONS", {"Origin": EVIL, "Access-Control-Request-Method": "POST"}, b""),
        ("OPTIONS", {"Access-Control-Request-Method": "POST"}, b""),
        ("GET", {**POLL_HEADERS, "Origin": EVIL}, b""),
        ("GET", {**SSE_HEADERS, "Origin": EVIL}, b""),
        ("POST", {**POST_HEADERS, "Origin": EVIL}, b"x"),
        ("GET", {**POLL_HEADERS, "Origin": "null"}, b""),
    ]
    for method, headers, body in requests:
        conn = await RawConnection.open(srv.port)
        head, _ = await conn.request(http_request(method, headers=headers, body=body))
        assert head.status in (403, 405), (method, headers, head.status)
        if method == "OPTIONS":
            assert head.status == 405 and head.get("allow") == "GET, POST"
        assert head.get("access-control-allow-origin") is None
        assert head.get("access-control-allow-credentials") is None
        await conn.close()
    # The allowed origin gets its own origin back, with credentials, never "*".
    conn = await RawConnection.open(srv.port)
    headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    head, _ = await conn.request(http_request("OPTIONS", headers=headers))
    assert head.status == 204
    assert head.get("access-control-allow-origin") == "https://app.example"
    assert head.get("access-control-allow-credentials") == "true"
    await conn.close()


# --- 56 ---------------------------------------------------------------------------


async def test_56_guessed_session_ids_never_hit(aiohttp_server, caplog, scale):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, poll_timeout=30, session_idle_timeout=120)
    guesses = scale(20_000, 100_000)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        live = await polling_session(s, srv.url)
        conn = srv.endpoint.registry.get(live)
        conn.send("secret")
    # 192-bit ids from secrets: 32 URL-safe characters.
    assert len(live) == 32
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    rng = random.Random(56)
    ids = ["".join(rng.choice(alphabet) for _ in range(32)) for _ in range(guesses)]
    # One character (6 bits, so at least one bit) away from the live id, at every position.
    for pos in range(32):
        other = alphabet[(alphabet.index(live[pos]) + 1) % 64]
        ids.append(live[:pos] + other + live[pos + 1 :])
    statuses: dict[int, int] = {}
    issued: set[str] = set()
    per_conn = (len(ids) + 3) // 4

    async def pipelined(chunk: list[str]) -> None:
        raw = await RawConnection.open(srv.port)
        reqs = b"".join(
            http_request("GET", headers={**POLL_HEADERS, "Cookie": f"bullet_sid={g}"})
            for g in chunk
        )
        writer = asyncio.ensure_future(raw.send(reqs))
        for _ in chunk:
            head = await raw.read_head(timeout=60)
            await raw.read_body(head)
            statuses[head.status] = statuses.get(head.status, 0) + 1
            cookie = head.get("set-cookie") or ""
            issued.add(cookie.split(";")[0].split("=", 1)[-1])
        await writer
        await raw.close()

    await asyncio.gather(*(pipelined(ids[i : i + per_conn]) for i in range(0, len(ids), per_conn)))
    # Every guess is answered like "no cookie": 204 with a fresh id; none reached the session.
    assert statuses == {204: len(ids)}
    assert len(issued) == len(ids) and not issued & set(ids)
    assert live not in issued
    assert list(conn.outbox) == ["secret"] and conn.parked_polls == 0
    assert srv.opens() == 1
    # Ids are never logged in clear.
    assert live not in caplog.text
    assert not any(g in caplog.text for g in ids[:1000])
    # One INFO line per unknown id at most, rate-limited: far fewer lines than guesses.
    assert logs.count("session_unknown", level=20) < len(ids) // 10
    logs.assert_no_traceback()


# --- 57 ---------------------------------------------------------------------------


async def test_57_a_cookie_the_server_never_issued_is_never_adopted(aiohttp_server):
    srv = await echo_server(aiohttp_server)
    forged = "F" * 32
    cookie = {"Cookie": f"bullet_sid={forged}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        async with s.get(srv.url, headers={**POLL_HEADERS, **cookie}) as r:
            assert r.status == 204 and r.cookies["bullet_sid"].value != forged
        async with s.get(srv.url, headers={**SSE_HEADERS, **cookie}) as r:
            assert r.status == 200 and r.cookies["bullet_sid"].value != forged
            await wait_for(lambda: len(srv.endpoint.registry) == 1)
        async with s.post(srv.url, data=b"hi", headers={**POST_HEADERS, **cookie}) as r:
            assert r.status == 200 and await r.text() == "hi"
            assert "Set-Cookie" not in r.headers  # a one-message session, nothing adopted
        async with s.ws_connect(srv.url, headers=cookie) as ws:
            await ws.send_str("x")
            assert (await ws.receive(timeout=5)).data == "x"
    assert srv.endpoint.registry.get(forged) is None
    assert all(e[1] != forged for e in srv.events)


# --- 58 ---------------------------------------------------------------------------


def _self_signed(tmp: Path) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the Secure attribute needs a TLS server")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def test_58_cookie_is_httponly_lax_path_and_secure_over_tls(tmp_path):
    events: list = []
    app = web.Application()
    setup(app, "/bullet", lambda: Recorder(events), options=Options(**FAST))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=_self_signed(tmp_path))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as s:
            for headers in (POLL_HEADERS, SSE_HEADERS):
                async with s.get(
                    f"https://127.0.0.1:{port}/bullet", headers=headers, ssl=False
                ) as r:
                    raw = r.headers.getall("Set-Cookie")
                    assert len(raw) == 1
                    attrs = {a.strip().split("=")[0].lower() for a in raw[0].split(";")[1:]}
                    assert {"httponly", "samesite", "path", "secure"} <= attrs
                    assert "SameSite=Lax" in raw[0] and "Path=/bullet" in raw[0]
    finally:
        await runner.cleanup()


async def test_58_a_stolen_cookie_reaches_one_session_only(aiohttp_server):
    srv = await echo_server(aiohttp_server, poll_timeout=0.5, session_idle_timeout=30)
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as alice,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as bob,
    ):
        a = await polling_session(alice, srv.url)
        b = await polling_session(bob, srv.url)
        srv.endpoint.registry.get(a).send("for alice")
        srv.endpoint.registry.get(b).send("for bob")
        thief = {**POLL_HEADERS, "Cookie": f"bullet_sid={a}"}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as mallory:
            async with mallory.get(srv.url, headers=thief) as r:
                assert await r.text() == "for alice"
            async with mallory.get(srv.url, headers=thief) as r:
                assert r.status == 204  # nothing else: bob's queue is out of reach
        assert list(srv.endpoint.registry.get(b).outbox) == ["for bob"]


# --- 59 ---------------------------------------------------------------------------


async def test_59_stale_cookies_after_a_restart_recover_without_an_error_loop(
    aiohttp_server, caplog
):
    logs = LogCheck(caplog)
    stale = "S" * 32  # issued by the server before its restart
    srv = await echo_server(aiohttp_server, poll_timeout=0.3)
    cookie = {"Cookie": f"bullet_sid={stale}"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        # Polling: 204 at once with a fresh cookie; the next poll with it works.
        async with s.get(srv.url, headers={**POLL_HEADERS, **cookie}) as r:
            assert r.status == 204
            fresh = r.cookies["bullet_sid"].value
        async with s.get(srv.url, headers={**POLL_HEADERS, "Cookie": f"bullet_sid={fresh}"}) as r:
            assert r.status == 204  # parked, then the poll timeout: a live session
        assert srv.endpoint.registry.get(fresh) is not None
        # POST: served (a one-message session), never an error.
        async with s.post(srv.url, data=b"hello", headers={**POST_HEADERS, **cookie}) as r:
            assert r.status == 200 and await r.text() == "hello"
        # Event stream: a new stream and a fresh cookie.
        async with s.get(srv.url, headers={**SSE_HEADERS, **cookie}) as r:
            assert r.status == 200 and r.cookies["bullet_sid"].value != stale
        # A client that keeps sending the stale id is never answered with an error.
        for _ in range(5):
            async with s.get(srv.url, headers={**POLL_HEADERS, **cookie}) as r:
                assert r.status == 204
    lines = [line for line in logs.lines("session_unknown") if session_hash(stale) in line]
    assert len(lines) == 1  # once per id
    logs.assert_no_traceback()
