"""E. Backpressure and resource exhaustion (docs/robustness.md items 43-51).

Outcomes only (codes, counts, ledgers, log lines, memory budgets); the timing
figures of these scenarios (p99 delivery, 204 punctuality) are in
``bench/robustness.py``. Short sizes run in CI; ``--robustness-long`` runs
the full ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import Counter

import aiohttp
import pytest
from aiohttp import web

from bullet_py import Options, Overflow, setup
from tests.helpers import FAST, POLL_HEADERS, POST_HEADERS, Recorder, wait_for
from tests.robustness.apps import echo_server
from tests.robustness.harness import (
    Baseline,
    LogCheck,
    ServerMemory,
    probing,
    shrink_send_buffer,
    traced_growth,
)
from tests.robustness.ledger import Ledger
from tests.robustness.raw import RawConnection, RawWebSocket, http_request

KB = 1024
MB = 1 << 20


def new_conn(endpoint, known):  # type: ignore[no-untyped-def]
    """The one session of ``endpoint`` not in ``known``."""
    (conn,) = [c for c in endpoint.registry if c.session_id not in known]
    return conn


async def first_cookie(session: aiohttp.ClientSession, url: str) -> str:
    """The original client's first poll: 204 and a cookie."""
    resp = await session.get(url, headers=POLL_HEADERS)
    assert resp.status == 204
    return resp.cookies["bullet_sid"].value


# --- 43 ---------------------------------------------------------------------------


async def test_43_slow_websocket_consumer_is_cut_and_others_get_everything(
    aiohttp_server, caplog, scale
):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, outbox_max_messages=64, outbox_max_chars=256 * KB)
    hub = srv.endpoint.hub
    healthy = scale(20, 100)
    async with probing(srv.url) as probe:
        base = Baseline(srv.endpoint)
        known = {c.session_id for c in srv.endpoint.registry}
        slow = await RawWebSocket.connect(srv.port, rcvbuf=4096)  # never reads
        await wait_for(lambda: len(srv.endpoint.registry) == len(known) + 1)
        slow_conn = new_conn(srv.endpoint, known)
        shrink_send_buffer(slow_conn)
        slow.conn.stop_reading()

        ledgers = [Ledger() for _ in range(healthy)]
        async with aiohttp.ClientSession() as s:
            sockets = [await s.ws_connect(srv.url, heartbeat=None) for _ in range(healthy)]
            await wait_for(lambda: len(srv.endpoint.registry) == len(known) + 1 + healthy)

            async def read(ws, ledger: Ledger) -> None:  # type: ignore[no-untyped-def]
                async for msg in ws:
                    ledger.delivered(msg.data)

            readers = [
                asyncio.ensure_future(read(w, g)) for w, g in zip(sockets, ledgers, strict=True)
            ]
            rounds = 0
            with traced_growth(8 * MB):
                while rounds < 1500 and (rounds < 50 or not slow_conn.closed):
                    message = ""
                    for g in ledgers:
                        message = g.stamp("bcast", pad=KB)
                    # The push path never suspends: one slow socket cannot hold it up.
                    push = hub.broadcast(message)
                    with pytest.raises(StopIteration):
                        push.send(None)
                    rounds += 1
                    await asyncio.sleep(0.01)  # the attack's pace: 1 KB every 10 ms
                    if rounds % 25 == 0:
                        await probe.check()
            assert slow_conn.closed
            assert slow_conn.close_code == 1008
            await wait_for(lambda: all(not g.missing("bcast") for g in ledgers), 30)
            for w in sockets:
                await w.close()
            await asyncio.gather(*readers)
        for g in ledgers:
            g.assert_clean(redelivered_ok=False)
        await slow.close()
        await wait_for(lambda: srv.closes() == 1 + healthy)
        await base.back()
    assert logs.count("slow_consumer") + logs.count("queue_overflow") >= 1
    logs.assert_no_traceback()


# --- 44 ---------------------------------------------------------------------------


async def test_44_event_stream_client_that_never_reads_is_dropped(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, stream_lifetime=None, outbox_max_chars=4 * MB)
    async with probing(srv.url) as probe:
        base = Baseline(srv.endpoint)
        known = {c.session_id for c in srv.endpoint.registry}
        client = await RawConnection.open(srv.port, rcvbuf=4096)
        await client.send(http_request("GET", headers={"Accept": "text/event-stream"}))
        await wait_for(lambda: len(srv.endpoint.registry) == len(known) + 1)
        conn = new_conn(srv.endpoint, known)
        shrink_send_buffer(conn)
        client.stop_reading()
        with traced_growth(8 * MB):
            pushed = 0
            while conn.attached and pushed < 200:
                assert conn.send("e" * (16 * KB))  # the writer stalls long before the cap
                pushed += 1
                await asyncio.sleep(0.005)  # the pushes' pace
            await wait_for(lambda: not conn.attached, 15)  # write timeout, then cut
            # What the stream could not take waits queued: nothing is lost.
            assert len(conn.outbox) >= 1
            await probe.check()
        assert await client.closed_by_peer()
        await wait_for(lambda: srv.closes() == 1, 15)  # the detached session expires once
        await client.close()
        await base.back()
    assert logs.count("slow_consumer") == 1
    logs.assert_no_traceback()


async def test_44_half_closed_event_stream_client_is_released(aiohttp_server, caplog):
    """A FIN from the client makes aiohttp close its side: no socket stays in CLOSE_WAIT."""
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, stream_lifetime=None)
    async with probing(srv.url):
        base = Baseline(srv.endpoint)
        client = await RawConnection.open(srv.port, rcvbuf=4096)
        await client.send(http_request("GET", headers={"Accept": "text/event-stream"}))
        head = await client.read_head()
        assert head.status == 200
        client.writer.write_eof()  # half-close, and never read again
        await wait_for(lambda: srv.opens() == 1)
        await wait_for(lambda: srv.closes() == 1, 15)  # subscriber removed, callback once
        assert await client.closed_by_peer()
        await client.close()
        await base.back()
    assert srv.opens() == srv.closes() == 1
    logs.assert_no_traceback()


# --- 45 ---------------------------------------------------------------------------


async def _issue(s: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    """``count`` fresh polling cookies, 250 requests at a time."""
    cookies: list[str] = []
    for start in range(0, count, 250):
        n = min(count, start + 250) - start
        cookies.extend(await asyncio.gather(*(first_cookie(s, url) for _ in range(n))))
    return cookies


async def _park(s: aiohttp.ClientSession, url: str, sid: str) -> int:
    headers = {**POLL_HEADERS, "Cookie": f"bullet_sid={sid}"}
    async with s.get(url, headers=headers) as r:
        await r.read()
        return r.status


def _parked(srv) -> int:  # type: ignore[no-untyped-def]
    return sum(c.parked_polls for c in srv.endpoint.registry)


async def test_45_thousands_of_parked_polls_all_answered_204_then_503_past_the_cap(
    aiohttp_server, caplog, scale
):
    count = scale(500, 5000)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * count + 200:
        pytest.skip(f"ulimit -n is {soft}: {count} polls need {2 * count + 200} descriptors")
    logs = LogCheck(caplog)
    srv = await echo_server(
        aiohttp_server,
        poll_timeout=scale(5, 60),
        max_sessions=count + 1,  # the probe's session and the pollers; the next is over
        session_idle_timeout=1,
        pending_session_ttl=120,
    )
    url = srv.url
    async with probing(url) as probe:
        base = Baseline(srv.endpoint)
        connector = aiohttp.TCPConnector(limit=0)
        jar = aiohttp.DummyCookieJar()
        async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as s:
            cookies = await _issue(s, url, count)
            polls = [asyncio.ensure_future(_park(s, url, sid)) for sid in cookies]
            await wait_for(lambda: _parked(srv) == count, 60)  # all parked at once
            base.sample()
            # Past the global cap: 503 with Retry-After, at once.
            extra = await first_cookie(s, url)
            assert await _park(s, url, extra) == 503
            await probe.check()
            statuses = Counter(await asyncio.gather(*polls))
        assert statuses == {204: count}  # every one answered, by the poll timeout
        await wait_for(lambda: len(srv.endpoint.registry) == 1, 60)  # idle expiry
        await base.back(30)
    assert logs.count("session_limit") == 1
    logs.assert_no_traceback()


async def test_45_memory_per_parked_poll_is_under_20_kb(aiohttp_server):
    """Server-side Python memory of a parked poll of its own session (tracemalloc,
    server frames only); the process RSS per poll is a figure of bench/robustness.py."""
    count = 200
    srv = await echo_server(aiohttp_server, poll_timeout=120, pending_session_ttl=120)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as s:
        cookies = await _issue(s, srv.url, count)
        with ServerMemory() as mem:
            polls = [asyncio.ensure_future(_park(s, srv.url, sid)) for sid in cookies]
            await wait_for(lambda: _parked(srv) == count, 60)
            per_poll = mem.growth() / count
        for conn in srv.endpoint.registry:
            conn.close()  # answers them at once
        assert Counter(await asyncio.gather(*polls)) == {204: count}
    assert per_poll < 20 * KB, f"{per_poll:.0f} B per parked poll"


# --- 46 ---------------------------------------------------------------------------


@pytest.mark.parametrize("tabs", [2, 50])
async def test_46_many_gets_with_one_cookie_get_each_message_exactly_once(aiohttp_server, tabs):
    srv = await echo_server(aiohttp_server, poll_timeout=2, session_idle_timeout=30)
    messages = 40
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        sid = await first_cookie(s, srv.url)
        headers = {**POLL_HEADERS, "Cookie": f"bullet_sid={sid}"}
        seen: list[list[int]] = [[] for _ in range(tabs)]
        statuses: Counter[int] = Counter()
        done = asyncio.Event()

        async def tab(i: int) -> None:
            while not done.is_set():
                async with s.get(srv.url, headers=headers) as r:
                    statuses[r.status] += 1
                    if r.status == 200:
                        parsed = Ledger.parse(await r.text())
                        assert parsed is not None
                        seen[i].append(parsed[1])

        tasks = [asyncio.ensure_future(tab(i)) for i in range(tabs)]
        await wait_for(lambda: srv.endpoint.registry.get(sid) is not None)
        conn = srv.endpoint.registry.get(sid)
        await wait_for(lambda: conn.parked_polls == min(tabs, 2))
        ledger = Ledger()
        for _ in range(messages):
            assert conn.send(ledger.stamp("tabs"))
            await asyncio.sleep(0)
        await wait_for(lambda: sum(len(x) for x in seen) >= messages, 30)
        done.set()
        conn.close()  # answers the parked polls so the tabs stop
        await asyncio.gather(*tasks)
    delivered = Counter(seq for tab_seen in seen for seq in tab_seen)
    assert delivered == {seq: 1 for seq in range(messages)}  # exactly once across tabs
    for tab_seen in seen:
        assert tab_seen == sorted(tab_seen)  # each tab sees its share in order
    assert set(statuses) <= {200, 204}  # never a 5xx
    assert conn.parked_polls == 0


# --- 47 ---------------------------------------------------------------------------


async def test_47_post_flood_is_rate_limited_429_and_accepted_posts_stay_in_order(
    aiohttp_server, caplog, scale, long
):
    """One session floods POSTs: 429 past its rate, the accepted ones handled once, in order.

    CI: 400 back-to-back POSTs against 5 a second (any run shorter than 79 s must
    see 429s). Long: the default rate (200/s) against 16 connections for 30 s.
    """
    logs = LogCheck(caplog)
    rate = 200.0 if long else 5.0
    srv = await echo_server(aiohttp_server, post_rate_per_session=rate, post_rate_per_address=None)
    async with probing(srv.url) as probe:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
            sid = await first_cookie(s, srv.url)
            other = await first_cookie(s, srv.url)
            flood = {**POST_HEADERS, "Cookie": f"bullet_sid={sid}"}
            calm = {**POST_HEADERS, "Cookie": f"bullet_sid={other}"}
            statuses: Counter[int] = Counter()
            accepted: list[str] = []

            async def flooder(worker: int, until: float, count: int) -> None:
                i = 0
                while i < count and time.monotonic() < until:
                    body = f"noreply{worker}-{i}"
                    async with s.post(srv.url, data=body.encode(), headers=flood) as r:
                        statuses[r.status] += 1
                        if r.status == 204:
                            accepted.append(body)
                    i += 1

            with traced_growth(16 * MB):
                if long:
                    until = time.monotonic() + 30
                    workers = [asyncio.ensure_future(flooder(w, until, 10**9)) for w in range(16)]
                    while not all(w.done() for w in workers):
                        await asyncio.sleep(1)
                        await probe.check()
                    await asyncio.gather(*workers)
                else:
                    await flooder(0, time.monotonic() + 600, 400)
                # Another session of the same address is unaffected.
                async with s.post(srv.url, data=b"calm", headers=calm) as r:
                    assert r.status == 200 and await r.text() == "calm"
                await probe.check()
    assert statuses[429] > 0 and set(statuses) <= {204, 429}
    handled = [e[2] for e in srv.events if e[0] == "message" and e[1] == sid]
    if long:
        assert sorted(handled) == sorted(accepted)  # each accepted POST handled once
    else:
        assert handled == accepted  # ... and in order
    assert logs.count("rate_limited") >= 1
    logs.assert_no_traceback()


async def test_47_rate_limit_per_address_catches_rotating_cookies(aiohttp_server, caplog):
    logs = LogCheck(caplog)
    srv = await echo_server(aiohttp_server, post_rate_per_address=5)
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        for i in range(100):
            headers = {**POST_HEADERS, "Cookie": f"bullet_sid=forged{i}"}
            async with s.post(srv.url, data=b"noreply", headers=headers) as r:
                statuses[r.status] += 1
    assert statuses[429] > 0
    assert statuses[429] + statuses[204] == 100
    assert len(srv.endpoint.post_limits[0]) <= 10_000  # bounded tables
    assert logs.count("rate_limited") >= 1


# --- 48 ---------------------------------------------------------------------------


async def test_48_slowloris_headers_and_slow_bodies_are_cut_legit_clients_served(caplog, scale):
    """Header dribblers are closed by the keep-alive timeout ``serve()`` sets; slow
    bodies by ``Options.body_timeout`` (408)."""
    logs = LogCheck(caplog)
    events: list = []
    app = web.Application()
    setup(
        app, "/bullet", lambda: Recorder(events), options=Options(**{**FAST, "body_timeout": 0.5})
    )
    runner = web.AppRunner(app, keepalive_timeout=1.0)  # bullet_py.web.serve uses 15 s
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/bullet"
    try:
        async with probing(url) as probe:
            base = Baseline(None)
            dribblers = [await RawConnection.open(port) for _ in range(scale(200, 2000))]
            for d in dribblers:
                await d.send(b"GET /bullet HTTP/1.1\r\nHost: x\r\nX-a: ")
            slow_body = await RawConnection.open(port)
            await slow_body.send(
                http_request("POST", headers={**POST_HEADERS, "Content-Length": "1000"})
            )
            answer = asyncio.ensure_future(slow_body.read_head(timeout=60))
            for _ in range(200):  # 1 byte per attacker per round, bounded
                for d in dribblers:
                    if not d.ended:
                        with contextlib.suppress(ConnectionError):
                            await d.send(b"a")
                if not answer.done():
                    await slow_body.send(b"x")
                await probe.check()  # legitimate clients served throughout
                if all(d.ended for d in dribblers) and answer.done():
                    break
                await asyncio.sleep(0.05)  # the attack's pace
            for d in dribblers:
                assert await d.closed_by_peer(5)  # never got to finish its headers
                await d.close()
            assert (await answer).status == 408
            await slow_body.close()
            await base.back()
    finally:
        await runner.cleanup()
    assert logs.count("slow_body") == 1


def test_48_serve_closes_idle_and_dribbling_connections():
    """The examples' runner has a keep-alive timeout of its own, not aiohttp's hour."""
    from bullet_py.web import serve

    assert 0 < serve.KEEPALIVE_TIMEOUT <= 60


# --- 49 ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", list(Overflow))
async def test_49_queue_bound_in_bytes_and_count_with_the_overflow_line(
    aiohttp_server, caplog, policy
):
    """Count bound: tests/web/test_polling.py::test_queue_bound_and_overflow_policy.
    Here the character bound, with memory measured."""
    logs = LogCheck(caplog)
    srv = await echo_server(
        aiohttp_server,
        outbox_max_messages=100_000,
        outbox_max_chars=256 * KB,
        overflow=policy,
        session_idle_timeout=30,
    )
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        sid = await first_cookie(s, srv.url)
        headers = {**POST_HEADERS, "Cookie": f"bullet_sid={sid}"}
        async with s.post(srv.url, data=b"noreply", headers=headers) as r:
            assert r.status == 204
    conn = srv.endpoint.registry.get(sid)
    results = []
    with traced_growth(2 * MB):
        for _ in range(1000):  # 1 MB offered against a 256 KB bound
            results.append(await srv.endpoint.hub.send(sid, "q" * KB))
        assert conn.outbox.chars <= 256 * KB
    lines = logs.lines("queue_overflow")
    assert lines and all(f"policy={policy.value}" in line for line in lines)
    if policy is Overflow.CLOSE:
        assert results.count(True) == 256
        await wait_for(lambda: srv.closes() == 1)
    elif policy is Overflow.DROP_NEWEST:
        assert results.count(True) == 256
        assert "dropped=1" in lines[0]
    else:
        assert all(results)
        assert "dropped=" in lines[0]


# --- 50 ---------------------------------------------------------------------------


async def test_50_session_churn_plateaus_and_every_session_closes_once(aiohttp_server, scale, long):
    """50 sessions a second connect, send and leave, on every transport (10 s here,
    5 minutes with --robustness-long; the hour-long soak is bench/robustness.py)."""
    srv = await echo_server(aiohttp_server, session_idle_timeout=0.5, pending_session_ttl=1)
    seconds = scale(10, 300)
    base = Baseline(srv.endpoint)
    ledger = Ledger()
    url = srv.url

    async def one(i: int, s: aiohttp.ClientSession) -> None:
        kind = i % 3
        name = f"c{i}"
        if kind == 0:
            async with s.ws_connect(url) as ws:
                m = ledger.stamp(name)
                await ws.send_str(m)
                ledger.delivered((await ws.receive(timeout=60)).data)
        elif kind == 1:
            jar = {"Cookie": f"bullet_sid={await first_cookie(s, url)}"}
            m = ledger.stamp(name)
            async with s.post(url, data=m.encode(), headers={**POST_HEADERS, **jar}) as r:
                ledger.delivered(await r.text())
        else:
            async with s.get(url, headers={"Accept": "text/event-stream"}) as r:
                sid = r.cookies["bullet_sid"].value
                await wait_for(lambda: srv.endpoint.registry.get(sid) is not None, 60)
                m = ledger.stamp(name)
                await srv.endpoint.hub.send(sid, m)
                line = b""
                for _ in range(100):  # keep-alive comments may come first
                    line = await r.content.readline()
                    if line.startswith(b"data: ") or not line:
                        break
                ledger.delivered(line.decode().removeprefix("data: ").rstrip("\n"))

    samples: list[int] = []
    # Server-side allocations only, not the test's own records (sites only in long runs).
    with ServerMemory(frames=16 if seconds < 60 else 1) as mem:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
            started = time.monotonic()
            i = 0
            pending: set[asyncio.Future[None]] = set()
            while time.monotonic() - started < seconds:
                for _ in range(5):  # 5 every 100 ms: 50 a second
                    pending.add(asyncio.ensure_future(one(i, s)))
                    i += 1
                await asyncio.sleep(0.1)
                done = {t for t in pending if t.done()}
                for t in done:
                    t.result()
                pending -= done
                if i % (100 if seconds < 60 else 2500) == 0:  # a snapshot stalls the loop
                    samples.append(mem.growth())
            await asyncio.gather(*pending)
        await wait_for(lambda: len(srv.endpoint.registry) == 0, 30)
        await wait_for(lambda: srv.endpoint.registry.pending_count == 0, 30)
        growth = mem.growth()
    ledger.assert_clean(redelivered_ok=False)
    assert ledger.report().sent == i
    # Every session that opened closed exactly once.
    assert srv.opens() == srv.closes()
    opened = Counter(e[1] for e in srv.events if e[0] == "open")
    closed = Counter(e[1] for e in srv.events if e[0] == "close")
    assert opened == closed and set(closed.values()) == {1}
    # Plateau: after warm-up, the server's memory stops growing (< 1 MB over the run),
    # and what it still holds once every session is gone is small.
    if len(samples) >= 4:
        warm = samples[len(samples) // 4 :]
        assert max(warm) - warm[0] < MB, samples
    assert growth < 2 * MB, growth
    await base.back(30, pending=True)


# --- 51 ---------------------------------------------------------------------------


async def test_51_ten_thousand_pipelined_gets_on_one_connection(aiohttp_server, caplog, scale):
    logs = LogCheck(caplog)
    count = scale(10_000, 10_000)
    srv = await echo_server(aiohttp_server, max_pending_sessions=1000)
    async with probing(srv.url) as probe:
        base = Baseline(srv.endpoint)
        with traced_growth(16 * MB):
            conn = await RawConnection.open(srv.port)
            one = http_request("GET", headers=POLL_HEADERS)
            writer = asyncio.ensure_future(conn.send(one * count))
            answered = 0
            statuses: Counter[int] = Counter()
            try:
                while answered < count:
                    head = await conn.read_head(timeout=30)
                    await conn.read_body(head)
                    statuses[head.status] += 1
                    answered += 1
                    if answered % 2000 == 0:
                        await probe.check()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # the server may also end the connection at a bound of its own
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer
            await conn.close()
        assert answered > 0 and set(statuses) == {204}
        assert srv.endpoint.registry.pending_count <= 1000  # pending ids stay bounded
        await base.back()
    logs.assert_no_traceback()
