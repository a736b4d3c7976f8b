"""The example scripts as outside probes meet them (docs/protocol.md §6)."""

from __future__ import annotations

import asyncio
import re
import signal

import aiohttp
import pytest

from tests.helpers import POLL_HEADERS, POST_HEADERS, SSE_HEADERS, EventStreamReader
from tests.processes import run_script

RFC1123 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")
PAYLOADS = ["plain", "é € 😀", "a\r\nb\rc\nd\x00e", "\ufeffbom", "x=1&y=2+3%20", "z" * 65536]


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)


async def test_echo_on_every_transport_then_sigterm():
    async with run_script("echo.py") as server:
        assert server.line == f"listening on http://127.0.0.1:{server.port}"
        url = server.base + "/bullet"
        async with aiohttp.ClientSession(cookie_jar=jar()) as s:
            async with s.ws_connect(url) as ws:
                for p in [*PAYLOADS, ""]:
                    await ws.send_str(p)
                    assert (await ws.receive(timeout=5)).data == p
            first = await s.get(url, headers=POLL_HEADERS)
            assert first.status == 204
            for p in PAYLOADS:
                resp = await s.post(url, data=p.encode(), headers=POST_HEADERS)
                assert resp.status == 200
                body = await resp.read()
                # A payload starting with a BOM gets one more; the browser strips it.
                expected = ("\ufeff" + p) if p.startswith("\ufeff") else p
                assert body.decode() == expected
        assert await server.stop() == 0


async def test_clock_pushes_rfc1123_time_and_answers_ping():
    async with run_script("clock.py") as server:
        url = server.base + "/bullet"
        async with aiohttp.ClientSession(cookie_jar=jar()) as s:
            async with s.ws_connect(url) as ws:
                await ws.send_str("ping: alice")
                seen = []
                for _ in range(5):
                    msg = await ws.receive(timeout=5)
                    seen.append(msg.data)
                    if "pong" in seen and any(RFC1123.match(x) for x in seen):
                        break
                assert "pong" in seen
                assert any(RFC1123.match(x) for x in seen)
            stream = await s.get(url, headers=SSE_HEADERS)
            reader = EventStreamReader(stream)
            tick = await reader.next_event(timeout=5)
            assert tick is not None and RFC1123.match(tick)
            stream.close()
        async with aiohttp.ClientSession(cookie_jar=jar()) as s:
            assert (await s.get(url, headers=POLL_HEADERS)).status == 204
            resp = await s.get(url, headers=POLL_HEADERS)
            assert resp.status == 200 and RFC1123.match(await resp.text())
        assert await server.stop(signal.SIGINT) == 0


@pytest.mark.parametrize("script", ["echo.py", "clock.py"])
async def test_sigterm_with_live_clients_is_graceful(script):
    async with run_script(script, "--log-level", "DEBUG") as server:
        url = server.base + "/bullet"
        async with aiohttp.ClientSession(cookie_jar=jar()) as s:
            await s.get(url, headers=POLL_HEADERS)
            parked = asyncio.ensure_future(s.get(url, headers=POLL_HEADERS))
            ws = await s.ws_connect(url)
            await server.wait_output("event=poll_parked")
            server.proc.send_signal(signal.SIGTERM)
            msg = None
            for _ in range(10):
                msg = await ws.receive(timeout=10)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
            assert msg is not None and msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == 1001
            resp = await asyncio.wait_for(parked, 10)
            if script == "echo.py":
                assert resp.status == 204  # answered at shutdown, not left hanging
            else:
                assert resp.status in (200, 204)  # a clock tick may have come first
        assert await server.stop(None, timeout=10) == 0
