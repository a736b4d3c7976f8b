"""The project's bullet.js in Chromium resumes its session across network cuts.

The page talks to an in-process server through a TCP proxy (tests/robustness/
proxy.py) that plays the network. An outage first stops passing anything to
the browser while the server goes on writing (those messages are in flight,
then lost), then resets every connection, and holds new ones unanswered (as
a network that drops packets does, so the client waits on its reconnect
instead of moving down the transports); then it lets everything through.
The server pushes numbered messages from a task of its own, whatever the
connection does; the page must see every number once, in order, with no
reset (a client that does not count loses the messages in flight: checked by
hand by removing bullet_seen and X-Bullet-Seen from bullet.js, which makes
this test fail with a hole). A page away longer than
``session_idle_timeout`` must get the reset event and carry on in a fresh
session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, Page

from bullet_py import Connection, Handler, Options, add_static_js, setup
from tests.browser.harness import TRANSPORTS, client_url, open_page, page_errors, serve_app
from tests.robustness.proxy import DOWN, UP, FaultProxy, Plan

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# Per transport: the pushes of a session, their period (a poll carries one
# message, and the client polls again 100 ms after an answer), and the counts
# the page has reached at each outage.
PACE = {
    "websocket": (150, 0.02, (30, 90)),
    "eventsource": (150, 0.02, (30, 90)),
    "xhrPolling": (40, 0.2, (10, 25)),
}
OUTAGE = 1.0  # seconds the network is down (the thing under test, not a wait for something)
IDLE = 2.0  # session_idle_timeout in the away test
WAIT_MS = 20_000  # every wait in the page is bounded


class Ledger:
    """What the server's sessions did: opened, closed, pushed (in the test's loop)."""

    def __init__(self, transport: str) -> None:
        self.pushes, self.period, self.outages = PACE[transport]
        self.opened = 0
        self.closed = asyncio.Event()
        self.refused = 0  # pushes the session did not take (must stay 0)
        self.pushed = 0
        self._progress = asyncio.Event()

    def push(self) -> None:
        self.pushed += 1
        self._progress.set()

    async def wait_pushed(self, count: int) -> None:
        async with asyncio.timeout(10):
            while self.pushed < count:
                self._progress.clear()
                await self._progress.wait()


def counter_app(ledger: Ledger, options: Options) -> web.Application:
    """An endpoint whose every session is pushed "0", "1", ... by a task of its own."""

    class Counter(Handler):
        def __init__(self) -> None:
            self.task: asyncio.Task[None] | None = None

        async def on_open(self, conn: Connection) -> None:
            ledger.opened += 1
            self.task = conn.spawn(self.push(conn))

        async def push(self, conn: Connection) -> None:
            for i in range(ledger.pushes):
                if not conn.send(str(i)):
                    ledger.refused += 1
                ledger.push()
                await asyncio.sleep(ledger.period)

        async def on_close(self, conn: Connection) -> None:
            if self.task is not None:
                self.task.cancel()
            ledger.closed.set()

    app = web.Application()
    setup(app, "/bullet", Counter, options=options)
    add_static_js(app)
    return app


@contextlib.asynccontextmanager
async def through_proxy(ledger: Ledger, options: Options) -> AsyncIterator[FaultProxy]:
    """The counter app on 127.0.0.1, and a proxy in front of it (pages load through it)."""
    async with serve_app(counter_app(ledger, options)) as base:
        port = int(base.rsplit(":", 1)[1])
        async with FaultProxy(port) as proxy:
            yield proxy


IN_FLIGHT = 5  # messages the server writes into the dead network before the resets


async def network_down(proxy: FaultProxy, ledger: Ledger) -> None:
    """A dead network: what the server writes goes nowhere, then every connection is reset.

    New connections are accepted but nothing passes until :func:`network_up`.
    """
    proxy.plan = Plan(stall={UP, DOWN})
    for conn in proxy.conns:
        conn.stall(DOWN)
    await ledger.wait_pushed(ledger.pushed + IN_FLIGHT)
    for conn in proxy.conns:
        conn.cut()


def network_up(proxy: FaultProxy) -> None:
    """Let everything through again, the connections held meanwhile included."""
    proxy.plan = Plan()
    for conn in proxy.conns:
        conn.resume(UP)
        conn.resume(DOWN)


async def counting_page(context: BrowserContext, proxy: FaultProxy, transport: str) -> Page:
    base = f"http://127.0.0.1:{proxy.port}"
    page = await open_page(context, client_url(base, transport), ready="window.T && T.opens >= 1")
    assert await page.evaluate("T.transports") == [transport]
    return page


async def wait_count(page: Page, count: int) -> None:
    await page.wait_for_function(f"T.messages.length >= {count}", timeout=WAIT_MS)


def numbers(n: int) -> list[str]:
    return [str(i) for i in range(n)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_network_cuts_lose_nothing_and_duplicate_nothing(
    context: BrowserContext, transport: str
) -> None:
    ledger = Ledger(transport)
    async with through_proxy(ledger, Options()) as proxy:
        page = await counting_page(context, proxy, transport)
        for until in ledger.outages:  # two outages, while the server keeps pushing
            await wait_count(page, until)
            await network_down(proxy, ledger)
            await asyncio.sleep(OUTAGE)
            had = len(await page.evaluate("T.messages.slice()"))
            network_up(proxy)
            await wait_count(page, had + 1)  # it goes on (the browser may even retry a cut poll)
        last = ledger.pushes - 1  # the end (so a hole shows as a difference, not a timeout)
        await page.wait_for_function(f"T.messages.indexOf('{last}') >= 0", timeout=WAIT_MS)
        messages = await page.evaluate("T.messages.slice()")
        want = numbers(ledger.pushes)
        assert messages == want, _first_difference(messages, want)
        assert await page.evaluate("T.resets") == []
        transports = await page.evaluate("T.transports")
        assert set(transports) == {transport}  # resumed where it was
        if transport != "xhrPolling":  # (the browser itself may retry a cut poll)
            assert len(transports) == 3
        assert await page.evaluate("T.conn.seen") == ledger.pushes
        assert ledger.opened == 1  # one session all along: no second on_open
        assert not ledger.closed.is_set()
        assert ledger.refused == 0
        assert page_errors(page) == []
        await page.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_page_away_past_the_idle_timeout_gets_a_reset_and_a_fresh_session(
    context: BrowserContext, transport: str
) -> None:
    ledger = Ledger(transport)
    async with through_proxy(ledger, Options(session_idle_timeout=IDLE)) as proxy:
        page = await counting_page(context, proxy, transport)
        await wait_count(page, 10)
        await network_down(proxy, ledger)
        # Away until the server has given the session up (on_close ran).
        async with asyncio.timeout(IDLE + 8):
            await ledger.closed.wait()
        before = len(await page.evaluate("T.messages.slice()"))
        network_up(proxy)
        await page.wait_for_function("T.resets.length >= 1", timeout=WAIT_MS)
        await wait_count(page, before + 10)  # the fresh session's pushes arrive
        # One look at the page: its pushes keep coming meanwhile.
        messages, seen, resets = await page.evaluate("[T.messages.slice(), T.conn.seen, T.resets]")
        assert len(resets) == 1
        at = resets[0]["at"]
        assert resets[0] == {"received": at, "transport": transport, "at": at}
        # What the browser had read before the cut may reach the page a little
        # later, never after the reset.
        assert at >= before
        assert messages[:at] == numbers(at)  # the old session: continuous up to the gap
        fresh = messages[at:]
        assert fresh == numbers(len(fresh))  # the new one: from 0, continuous
        assert ledger.opened == 2
        assert seen == len(fresh)
        assert page_errors(page) == []
        await page.close()


def _first_difference(got: list[str], want: list[str]) -> str:
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"at {i}: got {got[max(0, i - 3) : i + 4]}, want {want[max(0, i - 3) : i + 4]}"
    return f"lengths {len(got)} and {len(want)}"
