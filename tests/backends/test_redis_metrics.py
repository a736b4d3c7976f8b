"""The Redis backend's state as metrics: connected, buffered writes, reconnections."""

from __future__ import annotations

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from bullet_py import metrics, setup
from bullet_py.backends.redis import RedisBackend
from tests.backends.conftest import RedisServer
from tests.helpers import Recorder, wait_for

pytestmark = pytest.mark.redis


async def test_connected_buffered_and_reconnects_follow_an_outage(
    aiohttp_client, redis_server: RedisServer
) -> None:
    registry = CollectorRegistry()

    def value(name: str) -> float:
        return registry.get_sample_value(name) or 0.0

    backend = RedisBackend(redis_server.url, prefix="metrics", reconnect_max=0.2)
    app = web.Application()
    endpoint = setup(app, "/bullet", lambda: Recorder([]), broker=backend)
    metrics.instrument(endpoint, registry)
    await aiohttp_client(app)  # starts the backend
    await wait_for(lambda: value("bullet_redis_connected") == 1)
    assert value("bullet_redis_buffered_writes") == 0

    await redis_server.stop()
    await endpoint.hub.broadcast("kept")  # one write that must wait for Redis
    await wait_for(lambda: value("bullet_redis_connected") == 0)
    assert value("bullet_redis_buffered_writes") >= 1

    await redis_server.start()
    await wait_for(lambda: value("bullet_redis_reconnects_total") >= 1, timeout=10)
    await wait_for(lambda: value("bullet_redis_buffered_writes") == 0, timeout=10)
    assert value("bullet_redis_connected") == 1
