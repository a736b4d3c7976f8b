"""Browser fixtures: one headless Chromium per session, a fresh context per test.

Everything here runs in the session's event loop (the browser, the example
processes, the in-process servers), so every browser test module sets
``pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, async_playwright

from tests.browser.harness import CHROMIUM, LAUNCH_ARGS, NODE_MODULES, run_example
from tests.processes import Running


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and item.get_closest_marker("browser") is None:
            raise pytest.UsageError(f"{item.nodeid}: browser tests must be marked browser")


def _check_installed() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh")
    if not (NODE_MODULES / "jquery1").is_dir():
        pytest.fail("tests/browser/node_modules is missing: run scripts/setup.sh")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    _check_installed()
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 900, "height": 640})
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def echo_server() -> AsyncIterator[Running]:
    async with run_example("echo") as server:
        yield server
        await server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def clock_server() -> AsyncIterator[Running]:
    async with run_example("clock") as server:
        yield server
        await server.stop()
