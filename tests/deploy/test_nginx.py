"""nginx with TLS in front of the README's two gunicorn workers, Chromium in front of nginx.

nginx runs the repository's ``examples/deploy/nginx.conf`` (ports, a throwaway
certificate and the upstream substituted) with its own prefix, on free ports of
127.0.0.1. The Backbone demo is opened over https by two browser profiles on
each transport; each sees the other's edit. The workers see plain HTTP from
nginx and learn the scheme from ``X-Forwarded-Proto``: without trusting it the
origin check would refuse every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from tests.backends.conftest import RedisServer
from tests.browser.harness import CHROMIUM, LAUNCH_ARGS, TRANSPORTS, page_errors
from tests.browser.test_backbone import edit, open_app, shows, unique_name
from tests.deploy.servers import Gunicorn, Nginx, run_gunicorn, run_nginx

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.asyncio(loop_scope="module")]


@dataclass
class Site:
    nginx: Nginx
    workers: Gunicorn


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    redis = RedisServer(tmp_path_factory.mktemp("redis"))
    await redis.start()
    try:
        async with (
            run_gunicorn(redis.url) as workers,
            run_nginx(tmp_path_factory.mktemp("nginx"), f"127.0.0.1:{workers.port}") as nginx,
        ):
            yield Site(nginx, workers)
    finally:
        await redis.stop(kill=True)


def _check_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    _check_chromium()
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_two_pages_over_https_see_each_others_edits(
    browser: Browser, site: Site, transport: str
) -> None:
    served_before = len(site.workers.served())
    contexts = [await browser.new_context(ignore_https_errors=True) for _ in range(2)]
    try:
        for context in contexts:
            context.set_default_timeout(15_000)
        a = await open_app(contexts[0], site.nginx.base, transport)
        b = await open_app(contexts[1], site.nginx.base, transport)
        assert await a.evaluate("location.protocol") == "https:"

        name = unique_name()
        await edit(a, {"name": name, "level": 7})
        await shows(b, {"name": name, "level": 7})
        await edit(b, {"class": "bard", "hp": 250})
        await shows(a, {"name": name, "level": 7, "class": "bard", "hp": 250})
        assert page_errors(a) == page_errors(b) == []

        # The workers knew the page was https: the session cookie is Secure.
        for context in contexts:
            cookies = [c for c in await context.cookies() if c["name"].startswith("bullet_sid")]
            assert cookies and all(c["secure"] for c in cookies), cookies
    finally:
        for context in contexts:
            await context.close()
    # Both workers served this test's requests (nginx opens a connection for each).
    workers = {pid for pid, *_ in site.workers.served()[served_before:]}
    assert workers == set(site.workers.worker_pids)


async def test_plain_http_is_sent_to_https(site: Site) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{site.nginx.http_port}/?transport=websocket"
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 301
            assert resp.headers["Location"] == "https://127.0.0.1/?transport=websocket"


async def test_metrics_are_not_served_to_the_public(site: Site) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{site.nginx.base}/metrics", ssl=False) as resp:
            assert resp.status == 403
