"""The seed's Backbone app (examples/backbone) in Chromium, on every transport.

The page is the example's own ``index.html`` + ``app.js`` (the seed's
``Backbone.sync`` verbatim), served at ``/`` by the real app started as a
process. Variants swap one script of that same page: jQuery 1.x instead of
the demo's 3.x, or the original BERT-JS (2012 line, from npm) instead of
``/js/bert.js``.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Frame, Page

from tests.browser.harness import (
    BERT_JS,
    DOCS,
    JQUERY,
    OPEN_MS,
    REPLY_MS,
    TRANSPORTS,
    js_arg,
    open_page,
    page_errors,
    run_example,
)
from tests.processes import Running

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

SHOT = {"name": "Łukasz € 😀", "class": "bard", "level": 12, "hp": 340}  # docs/screenshot.png
SHORT_MS = 4_000  # waits of the two-tab tests (each tab has a cookie, so a session, of its own)
_unique = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app_server() -> AsyncIterator[Running]:
    async with run_example("backbone/app") as server:
        yield server
        await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def other_context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A second browser profile: another user (no shared cookies)."""
    ctx = await browser.new_context(viewport={"width": 900, "height": 640})
    try:
        yield ctx
    finally:
        await ctx.close()


def unique_name() -> str:
    """The issue's name, made unique so that no earlier state can satisfy a wait.

    Always 16 UTF-16 units: its BERT length field never holds a 13 (CR), which
    would move event-stream pages to polling (tested on purpose further down).
    """
    return f"Łukasz € 😀 #{next(_unique):03d}"


async def open_app(
    context: BrowserContext,
    base: str,
    transport: str,
    *,
    jquery: str | None = None,
    bert: Path | None = None,
    timeout: int = OPEN_MS,
) -> Page:
    """The app's page at ``/`` forced onto ``transport``, once it shows the character."""
    files: dict[str, Path | None] = {}
    if jquery is not None:
        files[f"{base}/vendor/jquery.js"] = JQUERY[jquery]
    if bert is not None:
        files[f"{base}/js/bert.js"] = bert
    page = await open_page(
        context,
        f"{base}/?transport={transport}",
        files=files,
        ready="window.character && character.has('name') && Stream.connection.transport",
        timeout=timeout,
    )
    assert await page.evaluate("Stream.connection.transport") == transport
    return page


async def edit(page: Page | Frame, fields: Mapping[str, object]) -> None:
    """Type into the page's form and press Save, as a user does."""
    for key, value in fields.items():
        await page.fill(f"#f-{key}", str(value))
    await page.click("#edit button[type=submit]")


async def shows(page: Page | Frame, fields: Mapping[str, object], timeout: int = REPLY_MS) -> None:
    """Wait until the character sheet shows ``fields``."""
    checks = " && ".join(
        f"document.querySelector('#sheet [data-field=\"{k}\"]').textContent === {js_arg(str(v))}"
        for k, v in fields.items()
    )
    await page.wait_for_function(checks, timeout=timeout)


async def model(page: Page) -> dict[str, object]:
    result: dict[str, object] = await page.evaluate("character.toJSON()")
    return result


@pytest.mark.parametrize("jquery", [None, "jquery1"], ids=["jquery3-demo", "jquery1"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_two_pages_see_each_others_edits(
    browser: Browser,
    context: BrowserContext,
    other_context: BrowserContext,
    app_server: Running,
    transport: str,
    jquery: str | None,
) -> None:
    a = await open_app(context, app_server.base, transport, jquery=jquery)
    b = await open_app(other_context, app_server.base, transport, jquery=jquery)
    expected = "1.12.4" if jquery == "jquery1" else "3.7.1"
    for page in (a, b):
        # The page's Stream was built by $.bullet: the project's client under jQuery.
        assert await page.evaluate("jQuery.fn.jquery + ' ' + (jQuery.bullet === bullet)") == (
            f"{expected} true"
        )

    name = unique_name()
    await edit(a, {"name": name, "level": 7, "hp": 250})
    await shows(b, {"name": name, "level": 7, "hp": 250})
    await shows(a, {"name": name, "level": 7, "hp": 250})
    # The form of a page nobody is typing in follows too.
    assert await b.input_value("#f-name") == name

    await edit(b, {"class": "Bärbel’s bard ♫", "level": 42})
    await shows(a, {"name": name, "level": 42, "class": "Bärbel’s bard ♫"})
    assert await model(a) == await model(b)
    assert (await model(a))["name"] == name

    # A page opened later (a third user) reads the state.
    third = await browser.new_context()
    try:
        c = await open_app(third, app_server.base, transport, jquery=jquery)
        await shows(c, {"name": name, "level": 42, "hp": 250})
        assert page_errors(c) == []
    finally:
        await third.close()
    for page in (a, b):
        assert page_errors(page) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_page_on_the_original_bert_js_talks_with_one_on_bert_js(
    context: BrowserContext, other_context: BrowserContext, app_server: Running, transport: str
) -> None:
    original = await open_app(context, app_server.base, transport, bert=BERT_JS)
    ours = await open_app(other_context, app_server.base, transport)
    # Really the 2012 line: it writes true as the atom, where bert.js writes {bert, true}.
    assert await original.evaluate("Bert.encode(true).charCodeAt(1)") == 100
    assert await ours.evaluate("Bert.encode(true).charCodeAt(1)") == 104

    name = unique_name()
    await edit(original, {"name": name, "hp": 77})
    await shows(ours, {"name": name, "hp": 77})
    await edit(ours, {"name": name + " ✓", "level": 3})
    await shows(original, {"name": name + " ✓", "level": 3, "hp": 77})
    assert page_errors(original) == page_errors(ours) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_bad_message_is_answered_with_error_and_the_next_action_served(
    context: BrowserContext, other_context: BrowserContext, app_server: Running, transport: str
) -> None:
    page = await open_app(context, app_server.base, transport)
    watcher = await open_app(other_context, app_server.base, transport)
    await page.evaluate(
        """window.E = []; window.O = 0;
        Stream.on("message:error", function (m) { E.push([String(m[1]), typeof m[2]]); });
        Stream.on("open", function () { O++; });"""
    )
    await page.evaluate("Stream.send('this is not BERT')")
    await page.wait_for_function("E.length >= 1", timeout=REPLY_MS)
    await page.evaluate(
        """Stream.action("sync", Bert.tuple(Bert.atom("read"), Bert.atom("nobody"), []));
        Stream.action("frobnicate", Bert.tuple(Bert.atom("read"), Bert.atom("character"), []));"""
    )
    await page.wait_for_function("E.length >= 3", timeout=REPLY_MS)
    reasons = [reason for reason, _ in await page.evaluate("E")]
    assert reasons == ["undecodable", "unknown_model", "unknown_action"]

    # A value the model refuses: {sync, error, bad_field}; the page re-reads the state.
    before = await model(page)
    await page.evaluate("Backbone.sync('update', new Character({id: 1, level: 1000}))")
    await page.wait_for_function(
        "document.querySelector('#notice').textContent.indexOf('bad_field') >= 0",
        timeout=REPLY_MS,
    )

    # The session goes on: the next action is served, and other pages get it.
    name = unique_name()
    await edit(page, {"name": name})
    await shows(page, {"name": name})
    await shows(watcher, {"name": name})
    after = await model(page)
    assert after == {**before, "name": name}
    assert await page.evaluate("O") == 0  # never reconnected
    assert await page.evaluate("Stream.connection.transport") == transport
    assert page_errors(page) == []


async def test_a_push_holding_cr_reaches_an_event_stream_page_by_polling(
    context: BrowserContext, other_context: BrowserContext, app_server: Running
) -> None:
    """docs/protocol.md §2.3: an event stream cannot carry CR, so the page is moved to polling."""
    writer = await open_app(context, app_server.base, "websocket")
    reader = await open_app(other_context, app_server.base, "eventsource")
    # No byte 13 anywhere in this state: it travels on the event stream.
    await edit(writer, {"name": "CR test", "class": "monk", "level": 2, "hp": 12})
    await shows(reader, {"name": "CR test", "level": 2, "hp": 12})
    assert await reader.evaluate("Stream.connection.transport") == "eventsource"
    # hp 13 is the BERT small integer 97, 13: a CR inside the payload.
    await edit(writer, {"hp": 13})
    await shows(reader, {"hp": 13})
    assert await reader.evaluate("Stream.connection.transport") == "xhrPolling"
    assert await model(reader) == await model(writer)
    assert page_errors(reader) == []


@pytest.mark.parametrize("transport", ["websocket", "eventsource", "xhrPolling"])
async def test_two_tabs_of_one_browser_see_each_others_edits(
    context: BrowserContext, app_server: Running, transport: str
) -> None:
    a = await open_app(context, app_server.base, transport, timeout=SHORT_MS)
    b = await open_app(context, app_server.base, transport, timeout=SHORT_MS)
    name = unique_name()
    await edit(a, {"name": name, "class": "rogue", "level": 5, "hp": 50})  # no byte 13 in the state
    await shows(b, {"name": name}, timeout=SHORT_MS)
    await edit(b, {"name": name + " b"})
    await shows(a, {"name": name + " b"}, timeout=SHORT_MS)


async def test_two_event_stream_tabs_of_one_browser_after_a_push_holding_cr(
    context: BrowserContext, other_context: BrowserContext, app_server: Running
) -> None:
    writer = await open_app(other_context, app_server.base, "websocket")
    a = await open_app(context, app_server.base, "eventsource", timeout=SHORT_MS)
    b = await open_app(context, app_server.base, "eventsource", timeout=SHORT_MS)
    await edit(writer, {"name": unique_name(), "class": "rogue", "level": 5, "hp": 13})
    await shows(a, {"hp": 13}, timeout=SHORT_MS)
    await shows(b, {"hp": 13}, timeout=SHORT_MS)


async def test_screenshot_of_two_live_pages(context: BrowserContext) -> None:
    """Two pages of the demo side by side after an edit: docs/screenshot.png (README)."""
    async with run_example("backbone/app") as server:  # fresh state: the picture is stable
        page = await context.new_page()
        await page.set_viewport_size({"width": 960, "height": 600})
        await page.goto(f"{server.base}/__pages__/pair.html", wait_until="load")
        left, right = page.frame(name="left"), page.frame(name="right")
        assert left is not None and right is not None
        for frame in (left, right):
            await frame.wait_for_function(
                "window.character && character.has('name')", timeout=OPEN_MS
            )
        await edit(left, SHOT)
        await shows(right, SHOT)
        await shows(left, SHOT)
        await left.wait_for_function("document.querySelectorAll('#log li').length === 3")
        await right.wait_for_function("document.querySelectorAll('#log li').length === 2")
        await page.evaluate("document.activeElement && document.activeElement.blur()")
        png = await page.screenshot(animations="disabled", caret="hide")
        _write_if_changed(DOCS / "screenshot.png", png)
        await server.stop(signal.SIGTERM)


def _write_if_changed(path: Path, data: bytes) -> None:
    path.parent.mkdir(exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
