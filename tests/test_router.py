"""The Stream layer without sockets: a real Connection, BERT text in, BERT text out.

Covers docs/protocol.md §4 and docs/robustness.md items 1, 17, 35 and 36-42 at
the router level; tests/web/test_stream_wire.py repeats the main cases over sockets.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bullet_py import Connection, Options, Transport, logs
from bullet_py.codec.bert import BertCodec, decode, encode
from bullet_py.codec.json_codec import JsonCodec
from bullet_py.codec.terms import Atom
from bullet_py.exceptions import EncodeError
from bullet_py.hub import Hub
from bullet_py.registry import Registry
from bullet_py.router import (
    ERROR_REASONS,
    SYNC_METHODS,
    Context,
    Router,
    dict_to_props,
    error,
    ok,
    props_to_dict,
)

A = Atom
SYNC = A("sync")
CHARACTER = A("character")


@pytest.fixture(autouse=True)
def fresh_log_budget(monkeypatch):
    """log_event is rate-limited per event name; give each test a full budget."""
    monkeypatch.setattr(logs, "_counts", {})


class World:
    """One endpoint's registry and hub, without any transport."""

    def __init__(self, **options: Any) -> None:
        self.options = Options(**options)
        self.registry = Registry(self.options)
        self.hub = Hub(self.registry)

    async def session(self, router: Router, sid: str = "s1") -> Session:
        conn = Connection(
            session_id=sid,
            transport=Transport.WEBSOCKET,
            handler=router(),
            registry=self.registry,
            options=self.options,
            hub=self.hub,
        )
        self.registry.add(conn)
        await conn.open()
        return Session(conn)

    async def settle(self) -> None:
        """Let scheduled broadcasts run (bounded)."""
        await self.registry.drain_tasks(5.0)


class Session:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def raw(self, text: str) -> str | None:
        return await self.conn.handle_message(text)

    async def ask(self, term: Any) -> Any:
        reply = await self.raw(encode(term))
        return None if reply is None else decode(reply)

    def pushed(self) -> list[Any]:
        out = []
        while (message := self.conn.take()) is not None:
            out.append(decode(message))
        return out


class Character:
    """A model recording its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.state: dict[str, Any] = {"name": "Zoë", "level": 1}

    def read(self, ctx: Context, props: dict[str, Any]) -> Any:
        self.calls.append(("read", props))
        return ok(self.state)

    def update(self, ctx: Context, props: dict[str, Any]) -> Any:
        self.calls.append(("update", props))
        self.state.update(props)
        ctx.broadcast(ok(self.state))
        return ok(self.state)


def character_router(**kwargs: Any) -> tuple[Router, Character]:
    router = Router(**kwargs)
    model = router.model("character", Character())
    return router, model


def read_msg(*extra: Any) -> tuple[Any, ...]:
    return (SYNC, (A("read"), CHARACTER, [], *extra))


STATE_PROPS = [(A("name"), "Zoë"), (A("level"), 1)]


def is_error(reply: Any, reason: str) -> bool:
    return (
        isinstance(reply, tuple)
        and len(reply) == 3
        and reply[0] == A("error")
        and type(reply[1]) is Atom
        and reply[1] == reason
    )


async def still_serves(session: Session) -> None:
    """The positive control after every error: the next request works."""
    assert await session.ask(read_msg()) == (SYNC, A("ok"), STATE_PROPS)


# --- the happy path -----------------------------------------------------------


async def test_sync_read_replies_with_the_models_props():
    router, model = character_router()
    s = await World().session(router)
    assert await s.ask(read_msg()) == (SYNC, A("ok"), STATE_PROPS)
    assert model.calls == [("read", {})]


async def test_sync_props_reach_the_model_as_a_dict_and_others_get_the_push():
    world = World()
    router, model = character_router()
    a = await world.session(router, "a")
    b = await world.session(router, "b")
    props = [(A("name"), "Łukasz € 😀"), (A("level"), 2)]
    reply = await a.ask((SYNC, (A("update"), CHARACTER, props)))
    assert reply == (SYNC, A("ok"), props)
    assert model.calls == [("update", {"name": "Łukasz € 😀", "level": 2})]
    assert type(next(iter(model.calls[0][1]))) is str  # plain str keys
    await world.settle()
    assert b.pushed() == [(SYNC, A("ok"), props)]
    assert a.pushed() == []  # exclude_self


async def test_ref_is_echoed_as_the_last_element():
    router, _ = character_router()
    s = await World().session(router)
    assert await s.ask(read_msg(42)) == (SYNC, A("ok"), STATE_PROPS, 42)
    assert await s.ask(read_msg((A("r"), 7))) == (SYNC, A("ok"), STATE_PROPS, (A("r"), 7))


async def test_ref_is_also_echoed_on_errors_after_the_sync_shape_is_known():
    router, _ = character_router()
    s = await World().session(router)
    assert await s.ask((SYNC, (A("read"), A("nosuch"), [], 9))) == (
        A("error"),
        A("unknown_model"),
        "nosuch",
        9,
    )
    assert await s.ask((SYNC, (A("drop"), CHARACTER, [], 10))) == (
        A("error"),
        A("unknown_method"),
        "drop",
        10,
    )
    assert await s.ask((SYNC, (A("read"), CHARACTER, 5, 11))) == (
        A("error"),
        A("bad_request"),
        "Props is not a list",
        11,
    )


async def test_a_ref_that_cannot_be_echoed_is_a_bad_request():
    router, model = character_router()
    s = await World().session(router)
    # 2**60 decodes, but the encoder refuses integers a page would round.
    reply = decode(await s.raw(encode(read_msg(2**60), big_ints=True)))
    assert reply == (A("error"), A("bad_request"), "Ref cannot be echoed")
    assert model.calls == []
    await still_serves(s)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ([(A("a"), 1)], (SYNC, A("ok"), [(A("a"), 1)])),  # props: wrapped as ok
        ({"a": 1}, (SYNC, A("ok"), [(A("a"), 1)])),  # a dict goes out as a proplist
        (error("not_found"), (SYNC, A("error"), A("not_found"))),
        ((A("character"), 1), (A("character"), 1)),  # any tagged tuple: as is
        (7, (SYNC, A("ok"), 7)),
    ],
)
async def test_model_results_are_wrapped_by_the_documented_rules(result, expected):
    router = Router()

    class M:
        def read(self, ctx, props):
            return result

    router.model("m", M)
    s = await World().session(router)
    assert await s.ask((SYNC, (A("read"), A("m"), []))) == expected
    assert await s.ask((SYNC, (A("read"), A("m"), [], 1))) == (*expected, 1)


async def test_model_returning_none_sends_nothing_unless_a_ref_waits():
    router = Router()

    class M:
        def delete(self, ctx, props):
            return None

    router.model("m", M())
    s = await World().session(router)
    assert await s.raw(encode((SYNC, (A("delete"), A("m"), [])))) is None
    assert await s.ask((SYNC, (A("delete"), A("m"), [], 3))) == (SYNC, A("ok"), [], 3)


async def test_model_with_only_a_sync_method_gets_every_method_by_name():
    router = Router()
    seen: list[tuple[str, Any]] = []

    @router.model("m")
    class M:
        def sync(self, ctx, method, props):
            seen.append((method, props))
            return ok(method)

    s = await World().session(router)
    for method in SYNC_METHODS:
        assert await s.ask((SYNC, (A(method), A("m"), [(A("k"), 1)]))) == (SYNC, A("ok"), method)
    assert seen == [(m, {"k": 1}) for m in SYNC_METHODS]
    assert type(seen[0][0]) is str  # the fixed name, not the client's atom


async def test_specific_methods_win_over_sync():
    router = Router()

    class M:
        def read(self, ctx, props):
            return ok("read")

        def sync(self, ctx, method, props):
            return ok(f"sync:{method}")

    router.model("m", M())
    s = await World().session(router)
    assert (await s.ask((SYNC, (A("read"), A("m"), []))))[2] == "read"
    assert (await s.ask((SYNC, (A("patch"), A("m"), []))))[2] == "sync:patch"


async def test_actions_plain_and_async_and_none():
    router = Router()
    got: list[Any] = []

    @router.action("ping")
    def ping(ctx, msg):
        got.append(msg)
        return (A("pong"), msg)

    @router.action("later")
    async def later(ctx, msg):
        await asyncio.sleep(0)
        return [msg, msg]

    @router.action("quiet")
    def quiet(ctx, msg):
        got.append(("quiet", msg))

    s = await World().session(router)
    assert await s.ask((A("ping"), (1, "é"))) == (A("pong"), (1, "é"))
    assert await s.ask((A("later"), 3)) == [3, 3]
    assert await s.raw(encode((A("quiet"), 4))) is None
    assert got == [(1, "é"), ("quiet", 4)]


async def test_router_registered_with_setup_is_a_handler_factory():
    router = Router()
    h1, h2 = router(), router()
    assert h1 is not h2
    assert router.handler_factory() is not h1


async def test_hooks_open_close_and_info():
    world = World()
    router = Router()
    events: list[str] = []

    @router.on_open
    def opened(ctx):
        ctx.state["n"] = 0
        events.append(f"open {ctx.session_id}")

    @router.on_close
    async def closed(ctx):
        events.append(f"close {ctx.session_id}")

    s = await world.session(router, "x1")
    # No on_info hook: the payload is a term, pushed as is.
    await s.conn.handle_info((A("tick"), 1))
    assert s.pushed() == [(A("tick"), 1)]

    @router.on_info
    def info(ctx, payload):
        return None if payload == "skip" else (A("info"), payload)

    await s.conn.handle_info("x")
    await s.conn.handle_info("skip")
    await s.conn.handle_info({1, 2})  # the hook returns an unencodable term: nothing sent
    assert s.pushed() == [(A("info"), "x")]
    await s.conn.finish()
    assert events == ["open x1", "close x1"]


# --- docs/robustness.md item 1: empty, and undecodable ----------------------------------


async def test_empty_message_is_an_error_and_the_session_goes_on():
    router, model = character_router()
    s = await World().session(router)
    reply = decode(await s.raw(""))
    assert reply == (A("error"), A("empty"), "")
    assert model.calls == []
    await still_serves(s)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("\x82\x61\x01", "bad_version"),
        ("\x61\x01", "bad_version"),
        ("\x83", "truncated"),
        ("\x83\x61\x01GARBAGE", "trailing_data"),
        ("\x83\x74\x00\x00\x00\x00", "unsupported_tag:116"),
        ("\x83\x64\x00\x03abc\x00", "trailing_data"),
    ],
)
async def test_undecodable_messages_say_why(text, reason, caplog):
    router, model = character_router()
    s = await World().session(router)
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        reply = decode(await s.raw(text))
    assert reply[:2] == (A("error"), A("undecodable"))
    assert reply[2] == reason
    lines = [r.getMessage() for r in caplog.records if "stream_rejected" in r.getMessage()]
    assert len(lines) == 1
    assert "reason=undecodable" in lines[0]
    assert not any(r.exc_info for r in caplog.records)  # a client fault: no traceback
    assert model.calls == []
    await still_serves(s)


# --- docs/robustness.md item 17: right BERT, wrong shape ---------------------------------

WRONG_SHAPES = [
    1,  # 83 61 01
    (SYNC,),
    (SYNC, 1),
    (SYNC, 1, 2),
    [SYNC, (A("read"), CHARACTER, [])],  # a list, not a tuple
    ("sync", (A("read"), CHARACTER, [])),  # action is a string, not an atom
    (b"sync", (A("read"), CHARACTER, [])),
    (SYNC, (A("read"), CHARACTER)),
    (SYNC, (A("read"), CHARACTER, [], 1, 2)),
    (SYNC, [A("read"), CHARACTER, []]),
    (SYNC, (A("read"), CHARACTER, A("not_a_list"))),
    (SYNC, (A("read"), CHARACTER, (A("a"), 1))),  # a tuple is not a proplist
    (SYNC, (A("read"), CHARACTER, [1])),
    (SYNC, (A("read"), CHARACTER, [(A("a"), 1, 2)])),
    (SYNC, (A("read"), CHARACTER, [(A("a"), 1), (A("a"), 2)])),  # duplicate keys
    (SYNC, (A("read"), CHARACTER, [(b"a", 1)])),  # binary key
    (SYNC, (A("read"), CHARACTER, [(1, 1)])),
    (SYNC, ("read", CHARACTER, [])),  # method is a string
    (SYNC, (A("read"), "character", [])),  # model is a string
    (SYNC, (A("read"), 5, [])),
    (SYNC, (1.5, CHARACTER, [])),
]


@pytest.mark.parametrize("term", WRONG_SHAPES, ids=[repr(t)[:40] for t in WRONG_SHAPES])
async def test_wrong_shapes_are_bad_requests_and_no_handler_runs(term, caplog):
    router, model = character_router()
    s = await World().session(router)
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        reply = await s.ask(term)
    assert is_error(reply, "bad_request"), reply
    assert type(reply[2]) is str and reply[2]
    assert model.calls == []
    assert sum("reason=bad_request" in r.getMessage() for r in caplog.records) == 1
    await still_serves(s)


def test_props_helpers_report_duplicates_deterministically():
    pairs = [(A("a"), 1), (A("b"), 2), (A("a"), 3)]
    assert props_to_dict(pairs) == {"a": 3, "b": 2}  # last wins by default
    assert props_to_dict(pairs, duplicates="first") == {"a": 1, "b": 2}
    assert dict_to_props({"a": 1}) == [(A("a"), 1)]
    assert type(dict_to_props({"a": 1})[0][0]) is Atom


# --- docs/robustness.md items 36-39: names ---------------------------------------------------


async def test_unknown_action_is_reported_and_the_name_clipped_in_the_log(caplog):
    router, model = character_router()
    called: list[Any] = []
    router.add_action("known", lambda ctx, msg: called.append(msg))
    s = await World().session(router)
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        reply = await s.ask((A("frobnicate"), (A("read"), CHARACTER, [])))
    assert reply == (A("error"), A("unknown_action"), "frobnicate")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        reply = await s.ask((A("x" * 200), 1))
    assert reply == (A("error"), A("unknown_action"), "x" * 64)
    (record,) = caplog.records
    text = record.getMessage()
    assert "x" * 64 in text and "x" * 65 not in text
    assert "reason=unknown_action" in text and "transport=websocket" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        reply = await s.ask((A("x\nevent=forged"), 1))
    (record,) = caplog.records
    assert "\n" not in record.getMessage()  # the name is logged as a repr
    assert called == [] and model.calls == []
    await still_serves(s)


async def test_unregistered_model_is_unknown_model():
    router, model = character_router()
    s = await World().session(router)
    reply = await s.ask((SYNC, (A("read"), A("nosuchmodel"), [])))
    assert reply == (A("error"), A("unknown_model"), "nosuchmodel")
    assert model.calls == []
    await still_serves(s)


async def test_method_missing_on_the_model_is_unknown_method():
    router, model = character_router()  # Character has read and update only
    s = await World().session(router)
    for method in ("create", "patch", "delete"):
        reply = await s.ask((SYNC, (A(method), CHARACTER, [])))
        assert reply == (A("error"), A("unknown_method"), method)
    assert model.calls == []
    await still_serves(s)


EVIL_NAMES = [
    "__class__",
    "__init__",
    "__dict__",
    "__globals__",
    "__builtins__",
    "__import__",
    "__subclasses__",
    "__reduce__",
    "__getattribute__",
    "__del__",
    "mro",
    "_private",
    "registry",
    "os",
    "sys",
    "calls",
    "drop",
    "sync",
    "__call__",
    "read.__globals__",
]
REGISTRATION_NAMES = {"__class__", "sync", *SYNC_METHODS}


class Recording:
    """A model that records every attribute lookup made on it."""

    def __init__(self) -> None:
        object.__setattr__(self, "lookups", [])

    def __getattribute__(self, name: str) -> Any:
        object.__getattribute__(self, "lookups").append(name)
        return object.__getattribute__(self, name)

    def read(self, ctx, props):
        return ok([])

    def update(self, ctx, props):
        return ok([])


async def test_client_names_never_become_attribute_lookups():
    router = Router()
    double = Recording()
    router.model("character", double)
    lookups = object.__getattribute__(double, "lookups")
    # Registration looks up fixed names only.
    assert set(lookups) <= REGISTRATION_NAMES
    lookups.clear()
    s = await World().session(router)
    for name in EVIL_NAMES:
        atom = A(name)
        model_reply = await s.ask((SYNC, (A("read"), atom, [])))
        assert is_error(model_reply, "unknown_model"), (name, model_reply)
        method_reply = await s.ask((SYNC, (atom, CHARACTER, [])))
        assert is_error(method_reply, "unknown_method"), (name, method_reply)
        if name != "sync":  # {sync, ...} is the built-in action itself
            action_reply = await s.ask((atom, (A("read"), CHARACTER, [])))
            assert is_error(action_reply, "unknown_action"), (name, action_reply)
    assert await s.ask((SYNC, (A("read"), CHARACTER, []))) == (SYNC, A("ok"), [])
    assert lookups == []  # zero lookups at dispatch, not even for the valid call


@pytest.mark.parametrize(
    ("wire", "name"),
    [
        ("d\x00\x04true", "true"),
        ("d\x00\x05false", "false"),
        ("d\x00\x04none", "none"),
        ("d\x00\x04null", "null"),
        ("d\x00\x00", ""),
        ("h\x02d\x00\x04bertd\x00\x04true", "true"),  # {bert, true}
    ],
)
async def test_value_atoms_as_names_are_unknown_not_crashes(wire, name):
    router, model = character_router()
    s = await World().session(router)

    async def send(method: str, model_: str) -> Any:
        # {sync, {Method, Model, []}} built by hand so the atoms stay as written.
        text = "\x83h\x02d\x00\x04synch\x03" + method + model_ + "j"
        return decode(await s.raw(text))

    reply = await send("d\x00\x04read", wire)
    assert reply == (A("error"), A("unknown_model"), name)
    reply = await send(wire, "d\x00\x09character")
    assert reply == (A("error"), A("unknown_method"), name)
    reply = decode(await s.raw("\x83h\x02" + wire + "j"))
    assert reply == (A("error"), A("unknown_action"), name)
    assert model.calls == []
    await still_serves(s)


# --- docs/robustness.md item 40: handlers that raise ---------------------------------------


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")


def _recurse(n: int = 0) -> int:
    return _recurse(n + 1) + 1


RAISERS: dict[str, Any] = {
    "ValueError": lambda: ValueError("bad value"),
    "KeyError": lambda: KeyError("k"),
    "BadStr": BadStr,
    "SystemExit": lambda: SystemExit(3),
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "CancelledError": asyncio.CancelledError,
    "TimeoutError": lambda: TimeoutError("its own timeout, not ours"),
    "EncodeError": lambda: EncodeError("too_big", "from ctx.send"),
}


def _raiser(kind: str, how: str) -> Any:
    def plain(ctx, props):
        if kind == "RecursionError":
            _recurse()
        raise RAISERS[kind]()

    async def coro(ctx, props):
        await asyncio.sleep(0)
        return plain(ctx, props)

    return coro if how == "async" else plain


@pytest.mark.parametrize("how", ["inline", "async", "thread"])
@pytest.mark.parametrize("kind", [*RAISERS, "RecursionError"])
async def test_a_raising_handler_gives_handler_error_with_a_correlation_id(kind, how, caplog):
    router, _ = character_router()
    fn = _raiser(kind, "inline" if how == "thread" else how)
    router.model("boom", blocking=how == "thread")(type("Boom", (), {"update": staticmethod(fn)}))
    s = await World().session(router)
    with caplog.at_level(logging.ERROR, logger="bullet_py"):
        reply = await s.ask((SYNC, (A("update"), A("boom"), [], 5)))
    assert reply[:2] == (A("error"), A("handler_error"))
    cid = reply[2]
    assert isinstance(cid, str) and len(cid) == 8
    assert reply[3] == 5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert cid in errors[0].getMessage()
    assert "model boom.update" in errors[0].getMessage()
    assert errors[0].exc_info is not None  # the traceback is in the log...
    assert "Traceback" not in reply[2]  # ...and never in the reply
    await still_serves(s)


async def test_a_real_cancellation_still_cancels_the_handler():
    router = Router()
    started = asyncio.Event()
    finished: list[str] = []

    @router.action("slow")
    async def slow(ctx, msg):
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            finished.append("cleanup")

    s = await World().session(router)
    task = asyncio.ensure_future(s.raw(encode((A("slow"), 1))))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert finished == ["cleanup"]


async def test_a_real_cancellation_is_not_turned_into_another_error():
    """A handler that answers cancellation with its own exception still gets cancelled."""
    router = Router()
    started = asyncio.Event()

    @router.action("stubborn")
    async def stubborn(ctx, msg):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise ValueError("not me") from None

    s = await World().session(router)
    task = asyncio.ensure_future(s.raw(encode((A("stubborn"), 1))))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


# --- docs/robustness.md item 41: slow handlers --------------------------------------------


async def test_slow_async_handler_times_out_and_the_session_goes_on(caplog):
    router, _ = character_router(timeout=0.05)

    @router.action("nap")
    async def nap(ctx, msg):
        await asyncio.sleep(30)

    s = await World().session(router)
    t0 = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="bullet_py"):
        reply = await s.ask((A("nap"), 1))
    assert time.monotonic() - t0 < 5
    assert reply == (A("error"), A("timeout"), "0.05s")
    assert any("handler_timeout" in r.getMessage() for r in caplog.records)
    await still_serves(s)


async def test_per_action_timeout_overrides_the_routers():
    router = Router(timeout=30)

    @router.action("nap", timeout=0.05)
    async def nap(ctx, msg):
        await asyncio.sleep(30)

    s = await World().session(router)
    assert is_error(await s.ask((A("nap"), 1)), "timeout")


async def test_blocking_handler_runs_in_a_thread_and_other_sessions_go_on():
    world = World()
    router = Router(timeout=10)
    release = threading.Event()
    entered = threading.Event()
    threads: list[int] = []

    @router.action("block", blocking=True)
    def block(ctx, msg):
        threads.append(threading.get_ident())
        entered.set()
        assert release.wait(5)
        return "done"

    @router.action("echo")
    def echo(ctx, msg):
        return msg

    a = await world.session(router, "a")
    b = await world.session(router, "b")
    slow = asyncio.ensure_future(a.ask((A("block"), 1)))
    await asyncio.to_thread(entered.wait, 5)
    # While a's handler blocks its thread, b is served on the loop.
    assert await asyncio.wait_for(b.ask((A("echo"), "hi")), 5) == "hi"
    assert not slow.done()
    release.set()
    assert await asyncio.wait_for(slow, 5) == "done"
    assert threads and threads[0] != threading.get_ident()


async def test_blocking_handler_past_its_timeout_gets_timeout():
    router = Router(timeout=0.05)
    release = threading.Event()

    @router.action("block", blocking=True)
    def block(ctx, msg):
        release.wait(5)

    s = await World().session(router)
    try:
        assert is_error(await s.ask((A("block"), 1)), "timeout")
    finally:
        release.set()  # the thread cannot be killed: let it end


async def test_push_from_a_worker_thread_goes_through_the_loop():
    world = World()
    router = Router()

    @router.action("fanout", blocking=True)
    def fanout(ctx, msg):
        assert ctx.send((A("self"), msg)) is True
        ctx.broadcast((A("all"), msg))
        return "ok"

    a = await world.session(router, "a")
    b = await world.session(router, "b")
    assert await a.ask((A("fanout"), 1)) == "ok"
    # The thread queued its callbacks before the one that completes the call.
    await world.settle()
    assert a.pushed() == [(A("self"), 1)]
    assert b.pushed() == [(A("all"), 1)]


async def test_broadcast_to_a_group_and_including_self():
    world = World()
    router = Router()

    @router.action("join")
    def join(ctx, msg):
        ctx.conn.join("room")

    @router.action("shout")
    def shout(ctx, msg):
        ctx.broadcast((A("room"), msg), group="room", exclude_self=False)

    a = await world.session(router, "a")
    b = await world.session(router, "b")
    c = await world.session(router, "c")
    await a.ask((A("join"), 0))
    await b.ask((A("join"), 0))
    await c.ask((A("shout"), 1))
    await a.ask((A("shout"), 2))
    await world.settle()
    assert a.pushed() == [(A("room"), 1), (A("room"), 2)]
    assert b.pushed() == [(A("room"), 1), (A("room"), 2)]
    assert c.pushed() == []


# --- docs/robustness.md item 35: replies the page cannot read ---------------------------------


class Opaque:
    pass


BAD_REPLIES: dict[str, Any] = {
    "set": {1, 2},
    "object": Opaque(),
    "nan": math.nan,
    "inf": math.inf,
    "2**70": 2**70,
    "int key dict": {1: "a"},
    "bytes key dict": {b"k": 1},
    "nested set": [(A("a"), {1})],
    "too deep": None,  # built in the test: 200 nested lists
}


@pytest.mark.parametrize("kind", list(BAD_REPLIES))
async def test_unencodable_reply_is_bad_reply_and_logged_with_the_handler(kind, caplog):
    router, _ = character_router()
    value = BAD_REPLIES[kind]
    if kind == "too deep":
        value = 1
        for _ in range(200):
            value = [value]

    @router.action("give")
    def give(ctx, msg):
        return value

    s = await World().session(router)
    with caplog.at_level(logging.ERROR, logger="bullet_py"):
        reply = await s.ask((A("give"), 1))
    assert is_error(reply, "bad_reply")
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "action give" in record.getMessage()
    assert reply[2] in record.getMessage()
    await still_serves(s)


async def test_oversized_reply_is_bad_reply_at_the_endpoint_limit():
    world = World(max_message_size=1000)
    router, _ = character_router()

    @router.action("big")
    def big(ctx, n):
        return "x" * n

    s = await world.session(router)
    ok_reply = await s.raw(encode((A("big"), 990)))
    assert len(ok_reply) <= 1000 and decode(ok_reply) == "x" * 990
    assert is_error(await s.ask((A("big"), 1000)), "bad_reply")
    await still_serves(s)


async def test_fifty_megabyte_reply_is_capped():
    router = Router(max_reply_size=1_000_000)

    @router.action("huge")
    def huge(ctx, msg):
        return b"\x00" * (50 * 1024 * 1024)

    router.model("character", Character())
    s = await World().session(router)
    assert is_error(await s.ask((A("huge"), 1)), "bad_reply")
    await still_serves(s)


async def test_astral_text_counts_two_units_against_the_cap():
    router = Router(max_reply_size=30)

    @router.action("emoji")
    def emoji(ctx, n):
        return "😀" * n

    s = await World().session(router)
    assert await s.ask((A("emoji"), 13)) == "😀" * 13  # 83 6B + 2-byte length + 26 units = 30
    assert is_error(await s.ask((A("emoji"), 14)), "bad_reply")  # 32 units > 30


async def test_push_of_an_unencodable_term_raises_in_the_handler():
    world = World()
    router, _ = character_router()

    @router.action("push")
    def push(ctx, msg):
        ctx.broadcast({1, 2})

    s = await world.session(router)
    assert is_error(await s.ask((A("push"), 1)), "handler_error")
    await still_serves(s)


# --- docs/robustness.md item 42: order ----------------------------------------------------


async def test_pipelined_messages_are_answered_in_order():
    router = Router()

    @router.action("n")
    async def n(ctx, msg):
        for _ in range(msg % 3):
            await asyncio.sleep(0)
        return msg

    s = await World().session(router)
    replies = await asyncio.wait_for(asyncio.gather(*(s.ask((A("n"), i)) for i in range(1000))), 30)
    assert replies == list(range(1000))


# --- codecs ---------------------------------------------------------------------------


async def test_2012_booleans_go_out_as_atoms():
    router = Router(codec=BertCodec(booleans="2012"))

    @router.model("flags")
    class Flags:
        def read(self, ctx, props):
            return ok({"on": True, "off": False, "none": []})

    s = await World().session(router)
    reply = await s.raw(encode((SYNC, (A("read"), A("flags"), []))))
    assert "d\x00\x04true" in reply and "d\x00\x05false" in reply
    assert "bert" not in reply
    assert decode(reply) == (SYNC, A("ok"), [(A("on"), True), (A("off"), False), (A("none"), [])])
    # A 2012 page's boolean atoms arrive as Python booleans.
    seen: list[Any] = []
    router.add_action("flag", lambda ctx, msg: seen.append(msg))
    await s.raw("\x83h\x02d\x00\x04flagd\x00\x04true")
    assert seen == [True]


async def test_json_codec_uses_strings_for_names_and_objects_for_props():
    codec = JsonCodec()
    router, model = character_router(codec=codec)
    s = await World().session(router)
    reply = await s.raw('["sync",["update","character",{"level":3},"r1"]]')
    assert codec.decode(reply) == ("sync", "ok", {"name": "Zoë", "level": 3}, "r1")
    assert model.calls == [("update", {"level": 3})]
    assert codec.decode(await s.raw('["nope",1]')) == ("error", "unknown_action", "nope")
    assert codec.decode(await s.raw("[1,2"))[:2] == ("error", "undecodable")


# --- registration ------------------------------------------------------------------------


def test_registration_rules():
    router = Router()
    router.add_action("a", lambda ctx, msg: None)
    with pytest.raises(ValueError, match="already"):
        router.add_action("a", lambda ctx, msg: None)
    with pytest.raises(ValueError, match="built in"):
        router.add_action("sync", lambda ctx, msg: None)
    for name in ("true", "false", "null"):
        with pytest.raises(ValueError, match="cannot be reached"):
            router.add_action(name, lambda ctx, msg: None)
    with pytest.raises(TypeError):
        router.add_action("", lambda ctx, msg: None)
    with pytest.raises(ValueError):
        router.add_action("x" * 256, lambda ctx, msg: None)
    with pytest.raises(TypeError, match="not callable"):
        router.add_action("b", 5)  # type: ignore[arg-type]

    async def coro(ctx, msg):
        return None

    with pytest.raises(ValueError, match="blocking"):
        router.add_action("c", coro, blocking=True)
    with pytest.raises(TypeError, match="defines none"):
        router.model("empty", object())
    router.model("character", Character)
    assert isinstance(router.models["character"], Character)  # a class is instantiated once
    with pytest.raises(ValueError, match="already"):
        router.model("character", Character())
    with pytest.raises(ValueError):
        Router(timeout=0)
    with pytest.raises(ValueError):
        Router(max_reply_size=0)
    assert set(router.actions) == {"a"}


def test_error_reasons_are_the_documented_set():
    assert ERROR_REASONS == {
        "empty",
        "undecodable",
        "bad_request",
        "unknown_action",
        "unknown_model",
        "unknown_method",
        "handler_error",
        "timeout",
        "bad_reply",
    }


# --- properties ---------------------------------------------------------------------------

terms = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.sampled_from([A("sync"), A("read"), A("character"), A("update"), A("x"), A("")]),
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple),
    max_leaves=12,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=st.text(max_size=60))
async def test_any_text_gets_one_reply_and_never_raises(text):
    router, model = character_router()
    s = await World().session(router)
    reply = decode(await s.raw(text))
    assert isinstance(reply, tuple)
    if reply[0] == A("error"):
        assert reply[1] in ERROR_REASONS
        assert isinstance(reply[2], str)
    else:
        assert reply[0] == SYNC
    assert len(model.calls) <= 1


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(term=terms)
async def test_any_term_gets_an_error_or_a_sync_reply(term):
    router, model = character_router()
    s = await World().session(router)
    reply = await s.ask(term)
    assert isinstance(reply, tuple) and len(reply) in (3, 4)
    if reply[0] == A("error"):
        assert reply[1] in ERROR_REASONS - {"handler_error", "timeout", "bad_reply"}
    else:
        assert reply[:2] == (SYNC, A("ok"))
        assert model.calls
