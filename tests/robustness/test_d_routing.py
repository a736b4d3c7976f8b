"""D. Routing and handlers (docs/robustness.md items 36-42), on each inbound path.

Router-level coverage (no sockets): tests/test_router.py — 36 (name clipped in
the log), 37, 38 (a recording double proves zero attribute lookups with
client-supplied names), 39, 40 (every exception kind, inline, async and in a
thread; a real cancellation still cancels), 41 (timeouts, blocking handlers in
threads), 42 (pipelined order). Wire-level: tests/web/test_stream_wire.py
(errors then success on one socket / one session, 1,000 pipelined frames,
100 rapid POSTs, a blocking handler not stalling others). Here: the full
name lists of 38/39 and the raisers of 40 over both paths, with the invariants.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from bullet_py.codec.bert import encode
from bullet_py.router import Context, Router
from tests.helpers import POST_HEADERS
from tests.robustness.apps import CHARACTER, SYNC, A, is_error, read_msg, stream_server
from tests.robustness.harness import LogCheck, probing

HOSTILE_NAMES = [
    "__class__", "__init__", "__dict__", "__globals__", "__builtins__", "__import__",
    "__subclasses__", "__reduce__", "__getattribute__", "__del__", "mro", "_private",
    "registry", "os", "sys",
]  # fmt: skip


def cases() -> list[tuple[int, str, str]]:
    """(item, message, expected reason)."""
    out: list[tuple[int, str, str]] = [
        (36, encode((A("frobnicate"), (A("read"), CHARACTER, []))), "unknown_action"),
        (36, encode((A("x" * 200), 1)), "unknown_action"),
        (37, encode((SYNC, (A("read"), A("nosuchmodel"), []))), "unknown_model"),
    ]
    for name in HOSTILE_NAMES:
        out.append((38, encode((SYNC, (A("read"), A(name), []))), "unknown_model"))
        out.append((38, encode((A(name), 1)), "unknown_action"))
    for method in ["drop", "sync", "__call__", *HOSTILE_NAMES]:
        out.append((38, encode((SYNC, (A(method), CHARACTER, []))), "unknown_method"))
    for wire in ["true", "false", "none", "null", ""]:
        atom = "d\x00" + chr(len(wire)) + wire
        model_msg = "\x83h\x02d\x00\x04synch\x03d\x00\x04read" + atom + "j"
        method_msg = "\x83h\x02d\x00\x04synch\x03" + atom + "d\x00\x09characterj"
        out.append((39, model_msg, "unknown_model"))
        out.append((39, method_msg, "unknown_method"))
    return out


CASES = cases()


async def ask(s: aiohttp.ClientSession, ws: Any, url: str, path: str, text: str) -> str:
    if path == "websocket":
        await ws.send_str(text)
        return str(await ws.receive_str(timeout=30))
    async with s.post(url, data=text.encode("utf-8"), headers=POST_HEADERS) as r:
        assert r.status == 200
        return await r.text()


@pytest.mark.parametrize("path", ["websocket", "post"])
async def test_36_39_names_that_must_not_resolve(aiohttp_server, caplog, path):
    logs = LogCheck(caplog)
    srv = await stream_server(aiohttp_server)
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s,
        s.ws_connect(srv.url) as ws,
    ):
        for item, text, reason in CASES:
            assert is_error(await ask(s, ws, srv.url, path, text), reason), (item, text[:40])
        assert not is_error(await ask(s, ws, srv.url, path, read_msg()), "unknown_model")
    assert srv.calls == ["read"]  # nothing else was ever called
    long_lines = [line for line in logs.lines("stream_rejected") if "x" * 64 in line]
    assert long_lines and all("x" * 65 not in line for line in long_lines)  # clipped to 64
    logs.assert_no_traceback()


RAISERS: dict[str, BaseException] = {
    "value_error": ValueError("boom"),
    "key_error": KeyError("k"),
    "recursion_error": RecursionError(),
    "system_exit": SystemExit(3),
    "keyboard_interrupt": KeyboardInterrupt(),
    "generator_exit": GeneratorExit(),
    "cancelled": asyncio.CancelledError(),
}


def add_raisers(router: Router, calls: list[str]) -> None:
    for name, exc in RAISERS.items():

        def handler(ctx: Context, msg: Any, exc: BaseException = exc, name: str = name) -> Any:
            calls.append(name)
            raise exc

        router.add_action(name, handler)

    class BadStr(Exception):
        def __str__(self) -> str:
            raise RuntimeError("str() fails too")

    def bad_str(ctx: Context, msg: Any) -> Any:
        calls.append("bad_str")
        raise BadStr

    router.add_action("bad_str", bad_str)

    def busy(ctx: Context, msg: Any) -> Any:
        calls.append("busy")
        end = time.monotonic() + 2
        while time.monotonic() < end:  # 2 s of CPU, in a worker thread
            pass

    router.add_action("busy", busy, blocking=True, timeout=0.5)


@pytest.mark.parametrize("path", ["websocket", "post"])
async def test_40_41_raising_and_slow_handlers_answer_that_client_only(
    aiohttp_server, caplog, path
):
    srv = await stream_server(aiohttp_server, configure=add_raisers)
    async with probing(srv.url, bert=True) as probe:
        async with (
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s,
            s.ws_connect(srv.url) as ws,
        ):
            for name in [*RAISERS, "bad_str"]:
                reply = await ask(s, ws, srv.url, path, encode((A(name), 1)))
                assert is_error(reply, "handler_error"), name
                await probe.check()  # the server and other sessions go on
            for slow in ("nap", "busy"):  # async sleep(30); 2 s of CPU in a thread
                reply = await ask(s, ws, srv.url, path, encode((A(slow), 1)))
                assert is_error(reply, "timeout"), slow
                await probe.check()
            assert not is_error(await ask(s, ws, srv.url, path, read_msg()), "timeout")
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "bullet_py"]
    assert len([r for r in errors if r.exc_info]) == len(RAISERS) + 1  # one traceback each
