"""The project's bullet.js in Chromium against the real echo and clock examples.

Each transport is forced with the client's own options (docs/protocol.md §1.7):
``{}`` (WebSocket), ``{disableWebSocket: true}`` (EventSource) and
``{disableWebSocket: true, disableEventSource: true}`` (XHR polling), with
the page using the global ``bullet`` or ``$.bullet`` under jQuery 1.x and 3.x.
"""

from __future__ import annotations

import re
import signal

import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page

from bullet_py import Connection, Handler, Options, add_static_js, setup
from tests.browser.harness import (
    OPEN_MS,
    RECONNECT_MS,
    TRANSPORTS,
    client_url,
    echo_round_trip,
    jquery_files,
    js_arg,
    open_page,
    page_errors,
    run_example,
    serve_app,
    wait_messages,
)
from tests.processes import Running, free_port

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

RFC1123 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")

UNICODE = "Łukasz € 😀 Zoë 中文 \u2028 \U0001f468\u200d\U0001f469\u200d\U0001f467"
CONTROL = "a\r\nb\rc\nd\x00e\r\n\r\n"
SSE_INJECTION = "x\n\nevent: evil\ndata: y\rid: 99"
EVERY_BYTE = "".join(chr(i) for i in range(256))
FORM_LIKE = "x=1&y=2+3%20 %41"
BOM = "\ufeffbom"
BIG = ("0123456789abcdef" * 4096)[:65536]  # 64 KiB
BIG_MIXED = ("é€😀\r\n\x00" * 10923)[:65536]  # 64 Ki code units of hard text
PAYLOADS = [UNICODE, CONTROL, SSE_INJECTION, EVERY_BYTE, FORM_LIKE, BOM, "\r", "\n", BIG, BIG_MIXED]
IN_ORDER = [f"message {i}" for i in range(200)]


async def connected(
    context: BrowserContext, base: str, transport: str, jquery: str | None = None
) -> Page:
    """A client page on ``base`` forced onto ``transport``, once its connection is open."""
    page = await open_page(
        context,
        client_url(base, transport),
        files=jquery_files(base, jquery),
        ready="window.T && T.opens >= 1",
    )
    if transport != "auto":
        assert await page.evaluate("T.transports") == [transport]
    return page


@pytest.mark.parametrize("jquery", [None, "jquery1", "jquery3"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_echo_is_exact_and_in_order(
    context: BrowserContext, echo_server: Running, transport: str, jquery: str | None
) -> None:
    page = await connected(context, echo_server.base, transport, jquery=jquery)
    # With jQuery loaded first, the page's connection comes from $.bullet.
    expected = (
        "bullet"
        if jquery is None
        else {"jquery1": "jQuery 1.12.4", "jquery3": "jQuery 3.7.1"}[jquery]
    )
    assert await page.evaluate("T.via") == expected

    for payload in PAYLOADS:
        assert await echo_round_trip(page, [payload]) == [payload], repr(payload[:40])
    assert await echo_round_trip(page, IN_ORDER) == IN_ORDER

    assert await page.evaluate("T.opens") == 1
    assert page_errors(page) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_clock_pushes_ticks_and_answers_ping(
    context: BrowserContext, clock_server: Running, transport: str
) -> None:
    page = await connected(context, clock_server.base, transport)
    await page.evaluate("T.conn.send('ping: alice')")
    await page.wait_for_function(
        "T.messages.indexOf('pong') >= 0 && T.messages.filter(m => m !== 'pong').length >= 2",
        timeout=OPEN_MS,
    )
    messages: list[str] = await page.evaluate("T.messages")
    ticks = [m for m in messages if m != "pong"]
    assert messages.count("pong") == 1
    assert all(RFC1123.match(t) for t in ticks), ticks
    assert page_errors(page) == []


class Echo(Handler):
    async def on_message(self, conn: Connection, message: str) -> str:
        return message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (Options(websocket=False), "eventsource"),
        (Options(websocket=False, eventsource=False), "xhrPolling"),
    ],
    ids=["no-websocket", "polling-only"],
)
async def test_client_falls_back_when_the_server_refuses_a_transport(
    context: BrowserContext, options: Options, expected: str
) -> None:
    app = web.Application()
    setup(app, "/bullet", Echo, options=options)
    add_static_js(app)
    async with serve_app(app) as base:
        page = await connected(context, base, "auto")
        assert await page.evaluate("T.transports") == [expected]
        assert await page.evaluate("T.conn.transport") == expected
        for payload in (UNICODE, CONTROL, EVERY_BYTE):
            assert await echo_round_trip(page, [payload]) == [payload]
        assert await page.evaluate("T.disconnects") == 0
        await page.close()


async def test_clients_reconnect_after_a_server_restart(browser: Browser) -> None:
    """SIGTERM the server, start it again on the same port: every page carries on."""
    port = free_port()
    # One browser profile per page: tabs of one browser share the session cookie.
    contexts = [await browser.new_context() for _ in TRANSPORTS]
    try:
        async with run_example("echo", port=port) as first:
            pages = {
                t: await connected(ctx, first.base, t)
                for t, ctx in zip(TRANSPORTS, contexts, strict=True)
            }
            for page in pages.values():
                assert await echo_round_trip(page, ["before"]) == ["before"]
            assert await first.stop(signal.SIGTERM) == 0

        # While the server is down: the project's client queues what is sent
        # (js/README) and sends it first once a transport opens again.
        for transport, page in pages.items():
            await page.wait_for_function("T.conn.readyState !== 1", timeout=OPEN_MS)
            await page.evaluate("T.messages = []")
            assert await page.evaluate(f"T.conn.send({js_arg('queued ' + transport)})") is True

        async with run_example("echo", port=port) as second:
            for transport, page in pages.items():
                await page.wait_for_function("T.opens >= 2", timeout=RECONNECT_MS)
                assert await wait_messages(page, 1) == [f"queued {transport}"]
                # A client only ever moves down the transports, and never onto one
                # its options disabled.
                now = await page.evaluate("T.conn.transport")
                assert now in TRANSPORTS[TRANSPORTS.index(transport) :], (transport, now)
                after = [f"after {transport} {i} {UNICODE}" for i in range(20)]
                assert await echo_round_trip(page, after) == after
                assert page_errors(page) == []
            await second.stop()
    finally:
        for ctx in contexts:
            await ctx.close()


async def test_two_tabs_of_one_browser_on_event_stream_and_polling(
    context: BrowserContext, clock_server: Running
) -> None:
    streaming = await connected(context, clock_server.base, "eventsource")
    polling = await connected(context, clock_server.base, "xhrPolling")
    for page in (streaming, polling):
        await page.evaluate("T.messages = []")
    for page in (streaming, polling):
        await page.wait_for_function("T.messages.length >= 2", timeout=3_500)
