"""Prometheus metrics: counters move, gauges read the endpoint, /metrics answers, workers add up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bullet_py import Overflow, logs, metrics
from bullet_py.backends.memory import MemoryBroker
from tests.helpers import POLL_HEADERS, POST_HEADERS, cache_buster, make_app, wait_for
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def instrumented_app(**options):
    registry = CollectorRegistry()
    app, endpoint = make_app(**options)
    metrics.instrument(endpoint, registry)
    metrics.add_metrics_route(app, registry=registry)
    return app, endpoint, registry


def value(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0.0


async def open_polling(client):
    resp = await client.get("/bullet", headers=POLL_HEADERS, params=cache_buster())
    assert resp.status == 204
    return resp.cookies["bullet_sid"].value


async def test_counters_move_on_every_transport(aiohttp_client):
    app, endpoint, reg = instrumented_app(poll_timeout=30)
    client = await aiohttp_client(app)

    async with client.ws_connect("/bullet") as ws:
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "hello"
    assert value(reg, "bullet_messages_in_total", transport="websocket") == 1
    assert value(reg, "bullet_messages_out_total", transport="websocket") == 1
    assert value(reg, "bullet_connections_opened_total", transport="websocket") == 1
    await wait_for(lambda: value(reg, "bullet_connections_closed_total", transport="websocket"))

    sid = await open_polling(client)
    poll = asyncio.ensure_future(client.get("/bullet", headers=POLL_HEADERS))
    await wait_for(lambda: (c := endpoint.registry.get(sid)) is not None and c.parked_polls == 1)
    assert value(reg, "bullet_connections_opened_total", transport="poll") == 1
    assert await endpoint.hub.send(sid, "pushed")
    resp = await poll
    assert await resp.text() == "pushed"
    assert value(reg, "bullet_messages_out_total", transport="poll") == 1

    resp = await client.post("/bullet", data=b"posted", headers=POST_HEADERS)
    assert await resp.text() == "posted"
    assert value(reg, "bullet_messages_in_total", transport="send") == 1
    assert value(reg, "bullet_messages_out_total", transport="send") == 1

    resp = await client.put("/bullet", data=b"x")
    assert resp.status == 405
    assert value(reg, "bullet_refusals_total", status="405", reason="status_405") == 1

    # Handler latency: one observation per on_message call (WebSocket and POST).
    assert value(reg, "bullet_handler_seconds_count", callback="on_message") == 2
    assert value(reg, "bullet_handler_seconds_count", callback="on_open") >= 2


async def test_metrics_route_serves_the_text_format(aiohttp_client):
    app, _endpoint, _reg = instrumented_app()
    client = await aiohttp_client(app)
    async with client.ws_connect("/bullet") as ws:
        await ws.send_str("x")
        await ws.receive(timeout=5)
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    sessions = {
        (s.labels["transport"], s.labels["state"]): s.value
        for s in families["bullet_sessions"].samples
    }
    assert sessions == {("websocket", "attached"): 1.0}
    messages = {
        s.labels["transport"]: s.value
        for s in families["bullet_messages_in"].samples
        if s.name == "bullet_messages_in_total"
    }
    assert messages["websocket"] == 1.0


async def test_gauges_read_the_sessions_at_scrape_time(aiohttp_client):
    app, endpoint, reg = instrumented_app(poll_timeout=30)
    client = await aiohttp_client(app)
    assert value(reg, "bullet_pending_sessions") == 0
    sid = await open_polling(client)
    assert value(reg, "bullet_pending_sessions") == 1
    poll = asyncio.ensure_future(client.get("/bullet", headers=POLL_HEADERS))
    await wait_for(lambda: (c := endpoint.registry.get(sid)) is not None and c.parked_polls == 1)
    assert value(reg, "bullet_pending_sessions") == 0
    assert value(reg, "bullet_parked_polls") == 1
    assert value(reg, "bullet_sessions", transport="poll", state="detached") == 1
    endpoint.registry.get(sid).close()
    await poll
    await wait_for(lambda: not value(reg, "bullet_sessions", transport="poll", state="detached"))
    assert value(reg, "bullet_parked_polls") == 0


@pytest.mark.parametrize("policy", [Overflow.DROP_NEWEST, Overflow.DROP_OLDEST, Overflow.CLOSE])
async def test_overflows_count_by_policy(aiohttp_client, policy):
    app, endpoint, reg = instrumented_app(poll_timeout=30, outbox_max_messages=3, overflow=policy)
    client = await aiohttp_client(app)
    sid = await open_polling(client)
    resp = await client.post("/bullet", data=b"noreply-open", headers=POST_HEADERS)
    assert resp.status == 204
    for i in range(5):
        await endpoint.hub.send(sid, f"m{i}")
    expected = 1 if policy is Overflow.CLOSE else 2  # a closed session takes no more
    assert value(reg, "bullet_queue_overflows_total", policy=policy.value) == expected
    if policy is not Overflow.CLOSE:
        assert value(reg, "bullet_queued_messages") == 3


class _RedisLike(MemoryBroker):
    """A broker showing the state properties the Redis backend has."""

    connected = False
    buffered = 7


def test_backend_state_and_reconnects():
    registry = CollectorRegistry()
    _app, endpoint = make_app()
    broker = endpoint.hub.broker = _RedisLike()
    metrics.instrument(endpoint, registry)
    assert value(registry, "bullet_redis_connected") == 0
    assert value(registry, "bullet_redis_buffered_writes") == 7
    broker.connected = True
    assert value(registry, "bullet_redis_connected") == 1
    logs.log_event(logging.WARNING, "backend_reconnected", outage="0.10s", buffered=0)
    assert value(registry, "bullet_redis_reconnects_total") == 1
    assert value(registry, "bullet_log_events_total", event="backend_reconnected") == 1


def test_metrics_off_is_the_no_op_recorder():
    _app, endpoint = make_app()
    assert endpoint.hub.recorder is logs.NO_RECORDER
    assert not metrics.instrumented(endpoint)
    metrics.instrument(endpoint, CollectorRegistry())
    assert metrics.instrumented(endpoint)


async def test_the_route_instruments_the_apps_endpoints_at_startup(aiohttp_client):
    registry = CollectorRegistry()
    app, endpoint = make_app()
    metrics.add_metrics_route(app, registry=registry)
    assert not metrics.instrumented(endpoint)
    client = await aiohttp_client(app)
    assert metrics.instrumented(endpoint)
    resp = await client.post("/bullet", data=b"x", headers=POST_HEADERS)
    assert resp.status == 200
    assert value(registry, "bullet_messages_in_total", transport="send") == 1


# --- several processes: one PROMETHEUS_MULTIPROC_DIR, one scrape sums them ----


@contextlib.asynccontextmanager
async def worker(directory: Path):
    port = free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "tests" / "metrics_worker.py"),
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(20):
            assert proc.stdout is not None
            while b"listening on" not in (line := await proc.stdout.readline()):
                assert line, "the worker exited before listening"
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_multiprocess_scrape_sums_every_worker(tmp_path):
    websockets = ("bullet_sessions", (("state", "attached"), ("transport", "websocket")))
    posts = ("bullet_messages_in_total", (("transport", "send"),))
    async with (
        worker(tmp_path) as first,
        worker(tmp_path) as second,
        aiohttp.ClientSession() as http,
    ):
        for base in (first, second):
            async with http.post(f"{base}/bullet", data=b"hi", headers=POST_HEADERS) as resp:
                assert await resp.text() == "hi"
        async with (
            http.ws_connect(f"{first}/bullet") as ws1,
            http.ws_connect(f"{second}/bullet") as ws2,
        ):
            for ws in (ws1, ws2):
                await ws.send_str("x")
                assert (await ws.receive(timeout=5)).data == "x"
            # Each worker copies its gauges every 0.05 s: wait, bounded, for both.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:
                async with http.get(f"{first}/metrics") as resp:
                    assert resp.status == 200
                    seen = samples(await resp.text())
                if seen.get(websockets) == 2 or loop.time() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert seen.get(websockets) == 2
            assert seen[posts] == 2
            assert seen[("bullet_messages_in_total", (("transport", "websocket"),))] == 2
            # The other worker answers the same sums.
            async with http.get(f"{second}/metrics") as resp:
                assert samples(await resp.text())[posts] == 2
