"""WebSocket keep-alive: one sweep per endpoint pings quiet peers and drops silent ones.

A raw client on 127.0.0.1 sees the pings; one that never answers is cut (the
connection ends without a close frame, logged as ``websocket_dead_peer``),
one that answers stays. Every socket's check is on the endpoint's one sweep,
and leaves it with its socket. The sweep itself: each member checked every
tick, a failing check logged without stopping the others, no timer left
once the last member has gone.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from bullet_py.web.sweep import TICKS, Sweep
from tests.helpers import wait_for
from tests.robustness.apps import echo_app, served
from tests.robustness.raw import OP_PING, OP_PONG, RawWebSocket

INTERVAL = 0.2


async def test_a_peer_that_never_answers_a_ping_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bullet_py")
    app, srv = echo_app(ws_ping_interval=INTERVAL)
    async with served(app, srv) as port:
        ws = await RawWebSocket.connect(port)
        try:
            first = await ws.recv(timeout=10)
            assert first is not None and first.opcode == OP_PING  # quiet for an interval
            ending = await ws.recv(timeout=10)  # not answered: the next is the end
            assert ending is None
        finally:
            await ws.close()
        assert "websocket_dead_peer" in caplog.text
        await wait_for(lambda: not srv.endpoint.keepalives.members)


async def test_a_peer_that_answers_stays_connected() -> None:
    app, srv = echo_app(ws_ping_interval=INTERVAL)
    async with served(app, srv) as port:
        ws = await RawWebSocket.connect(port)
        try:
            pings = 0
            while pings < 4:  # two intervals at least, each a ping answered
                frame = await ws.recv(timeout=10)
                assert frame is not None, "dropped though it answered"
                assert frame.opcode == OP_PING
                pings += 1
                await ws.send_frame(OP_PONG, frame.payload)
            await ws.send_text("still here")
            assert await ws.recv_text() == "still here"
        finally:
            await ws.close()


async def test_every_socket_is_on_the_endpoints_one_sweep_until_it_ends() -> None:
    app, srv = echo_app(ws_ping_interval=30.0)
    async with served(app, srv) as port:
        sockets = [await RawWebSocket.connect(port) for _ in range(3)]
        try:
            await wait_for(lambda: len(srv.endpoint.keepalives.members) == 3)
        finally:
            for ws in sockets:
                await ws.close()
        await wait_for(lambda: not srv.endpoint.keepalives.members)


class _Member:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[float] = []
        self.checked = asyncio.Event()

    def check(self, now: float) -> None:
        self.seen.append(now)
        self.checked.set()
        if self.fail:
            raise RuntimeError("broken check")


async def test_the_sweep_checks_every_member_and_a_failing_check_stops_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sweep = Sweep(INTERVAL)
    assert sweep.tick == INTERVAL / TICKS
    broken, sound = _Member(fail=True), _Member()
    sweep.add(broken)
    sweep.add(sound)
    try:
        for _ in range(2):  # two ticks: the sweep goes on after the failure
            sound.checked.clear()
            await asyncio.wait_for(sound.checked.wait(), 10)
        assert broken.seen and len(sound.seen) >= 2
        assert "keep-alive check failed" in caplog.text
    finally:
        sweep.discard(broken)
        sweep.discard(sound)


async def test_the_sweep_keeps_no_timer_without_members() -> None:
    sweep = Sweep(INTERVAL)
    member, later = _Member(), _Member()
    sweep.add(member)
    sweep.discard(member)
    sweep.add(later)  # a timer again for a new member
    try:
        await asyncio.wait_for(later.checked.wait(), 10)
        assert member.seen == []  # left before its first tick
    finally:
        sweep.discard(later)
    assert sweep._handle is None
