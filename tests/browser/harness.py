"""Helpers for the browser tests: pages on a server's origin, in-process servers, waits.

Test pages (``pages/``) are served under ``/__pages__/`` by the server under
test itself (``example_server.py`` runs an example's own app with that route
added), so a page is same-origin with the endpoint, as an application's page
is. Third-party scripts (jQuery 1.x/3.x, the original BERT-JS, from
``tests/browser/node_modules``) are swapped into a page by playwright routes,
removed once the page has loaded: the client's own traffic is never intercepted.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import BrowserContext, Page, Route
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.example_server import PAGES_PREFIX, add_pages
from tests.processes import Running, free_port, run_script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PAGES = HERE / "pages"
NODE_MODULES = HERE / "node_modules"
DOCS = ROOT / "docs"

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# The transports, top to bottom. A page forces one with the client's own options:
# {} / {disableWebSocket: true} / {disableWebSocket: true, disableEventSource: true}.
TRANSPORTS = ("websocket", "eventsource", "xhrPolling")

# Third-party scripts a page may be given instead of its own (npm, never vendored).
JQUERY = {
    "jquery1": NODE_MODULES / "jquery1" / "dist" / "jquery.js",
    "jquery3": NODE_MODULES / "jquery3" / "dist" / "jquery.js",
}
BERT_JS = NODE_MODULES / "bertjs" / "lib" / "bert.js"  # the original BERT-JS (2012 line)

# Every wait in the page is bounded by one of these (milliseconds).
OPEN_MS = 10_000
REPLY_MS = 15_000
RECONNECT_MS = 25_000  # 80+160+320 ms down the transports, then 10 s before starting over

_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
_EMPTY_SCRIPT = b"/* no library here */\n"


_PAGE_ERRORS: weakref.WeakKeyDictionary[Page, list[str]] = weakref.WeakKeyDictionary()


def page_errors(page: Page) -> list[str]:
    """Uncaught errors of a page opened with :func:`open_page` (tests assert none)."""
    return _PAGE_ERRORS.get(page, [])


def js_arg(value: Any) -> str:
    """A Python value as a JavaScript literal (for building page expressions)."""
    return json.dumps(value)


def _script_bodies(files: Mapping[str, Path | None]) -> dict[str, tuple[str, bytes]]:
    """URL -> (content type, body) for the files a page gets from disk."""
    bodies = {}
    for url, path in files.items():
        if path is None:
            bodies[url] = (_CONTENT_TYPES[".js"], _EMPTY_SCRIPT)
        else:
            bodies[url] = (_CONTENT_TYPES.get(path.suffix, "text/plain"), path.read_bytes())
    return bodies


async def open_page(
    context: BrowserContext,
    url: str,
    *,
    files: Mapping[str, Path | None] | None = None,
    ready: str | None = None,
    timeout: int = OPEN_MS,
) -> Page:
    """Open ``url`` (a document the server serves); the URLs in ``files`` come from local files.

    Only subresources are answered locally (third-party scripts from npm, a
    ``None`` file being an empty script): the document itself must come from
    the server, or Chromium's local-network checks refuse its WebSocket to
    127.0.0.1. ``ready`` is a page expression awaited after the load. Uncaught
    page errors are collected: see :func:`page_errors`.
    """
    page = await context.new_page()
    errors = _PAGE_ERRORS.setdefault(page, [])
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    overrides = _script_bodies(files or {})

    async def from_file(route: Route) -> None:
        content_type, body = overrides[route.request.url.split("?", 1)[0]]
        await route.fulfill(status=200, content_type=content_type, body=body)

    for target in overrides:
        await page.route(target, from_file)
    await page.goto(url, wait_until="load")
    if overrides:
        # Interception is only for the page's scripts, not for the client's traffic.
        await page.unroute_all(behavior="wait")
    if ready is not None:
        try:
            await page.wait_for_function(ready, timeout=timeout)
        except PlaywrightTimeoutError:
            raise AssertionError(f"{url}: not ready ({ready}); page errors: {errors}") from None
    return page


@contextlib.asynccontextmanager
async def run_example(name: str, *args: str, port: int | None = None) -> AsyncIterator[Running]:
    """Run ``examples/<name>.py``'s app with the test pages added, as a process (127.0.0.1)."""
    # run_script joins its argument to examples/: an absolute path replaces that.
    async with run_script(str(HERE / "example_server.py"), *args, name, port=port) as server:
        yield server


def client_url(base: str, transport: str = "auto", path: str = "/bullet") -> str:
    """The raw-connection test page (pages/client.html) on ``base``'s origin."""
    return f"{base}{PAGES_PREFIX}/client.html?t={transport}&path={path}"


def jquery_files(base: str, jquery: str | None) -> dict[str, Path | None]:
    """Serve jQuery ``jquery`` (a key of JQUERY, or None for none) to the client page."""
    return {f"{base}{PAGES_PREFIX}/vendor/jquery.js": JQUERY[jquery] if jquery else None}


async def wait_messages(page: Page, count: int, timeout: int = REPLY_MS) -> list[str]:
    """Wait until ``T.messages`` holds ``count`` messages; return them."""
    await page.wait_for_function(f"T.messages.length >= {count}", timeout=timeout)
    result: list[str] = await page.evaluate("T.messages.slice()")
    return result


async def echo_round_trip(page: Page, messages: list[str]) -> list[str]:
    """Send ``messages`` on the page's connection; return what came back, in order."""
    await page.evaluate("T.messages = []")
    sent = await page.evaluate(f"T.sendAll({js_arg(messages)})")
    assert sent == [True] * len(messages)
    return await wait_messages(page, len(messages))


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Run ``app``, with the test pages added, in this event loop on 127.0.0.1; yields its URL."""
    add_pages(app)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    try:
        await site.start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
