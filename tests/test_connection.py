"""Connection, the asyncio glue over SessionCore, without sockets.

The rules themselves are tested synchronously in tests/core/test_session.py;
here: parked polls as futures, waking writers, the handler lane and the
handler boundary as a session sees them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from bullet_py import CloseReason, Connection, Handler, Options, Overflow, Transport, logs
from bullet_py.hub import Hub
from bullet_py.registry import Registry

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(autouse=True)
def fresh_log_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """log_event is rate-limited per event name; give each test a full budget."""
    monkeypatch.setattr(logs, "_counts", {})


class Recorder(Handler):
    """A handler that counts its callbacks and echoes messages."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.messages: list[str] = []

    async def on_open(self, conn: Connection) -> None:
        self.opened += 1

    async def on_message(self, conn: Connection, message: str) -> str | None:
        self.messages.append(message)
        return f"echo:{message}"

    async def on_close(self, conn: Connection) -> None:
        self.closed += 1


class World:
    """One endpoint's options, registry and hub, and sessions made on them."""

    def __init__(self, **options: Any) -> None:
        self.options = Options(**options)
        self.registry = Registry(self.options)
        self.hub = Hub(self.registry)

    def connection(
        self, handler: Any = None, sid: str = "s1", transport: Transport = Transport.POLL
    ) -> Connection:
        conn = Connection(
            session_id=sid,
            transport=transport,
            handler=handler if handler is not None else Recorder(),
            registry=self.registry,
            options=self.options,
            hub=self.hub,
        )
        self.registry.add(conn)
        return conn

    async def opened(self, handler: Any = None, sid: str = "s1") -> Connection:
        conn = self.connection(handler, sid)
        await conn.open()
        return conn

    async def settle(self) -> None:
        """Let the scheduled background work (finish, on_info) run to its end."""
        await self.registry.drain_tasks(5.0)


async def until(predicate: Callable[[], bool], what: str = "condition") -> None:
    """Yield to the loop until ``predicate`` holds (a bounded number of turns)."""
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what} never became true")


def connected() -> bool:
    return True


def drain(conn: Connection) -> list[str]:
    out = []
    while (message := conn.take()) is not None:
        out.append(message)
    return out


# --- pushes: a parked poll or the queue -----------------------------------------


async def test_send_goes_to_a_parked_poll_not_the_queue() -> None:
    world = World()
    conn = await world.opened()
    poll = asyncio.create_task(conn.poll(5.0, connected))
    await until(lambda: conn.parked_polls == 1, "poll parked")

    assert conn.send("hello") is True
    assert await poll == "hello"
    assert len(conn.outbox) == 0
    assert conn.parked_polls == 0


async def test_send_without_a_poll_queues() -> None:
    world = World()
    conn = await world.opened()
    assert conn.send("a") is True
    assert conn.send("b") is True
    assert drain(conn) == ["a", "b"]


async def test_send_skips_a_poll_whose_client_left() -> None:
    world = World()
    conn = await world.opened()
    poll = asyncio.create_task(conn.poll(5.0, lambda: False))
    await until(lambda: conn.parked_polls == 1, "poll parked")

    assert conn.send("kept") is True
    assert await poll is None  # answered empty, never handed the message
    assert drain(conn) == ["kept"]


async def test_send_refuses_non_str_and_closed() -> None:
    world = World()
    conn = await world.opened()
    with pytest.raises(TypeError):
        conn.send(b"bytes")  # type: ignore[arg-type]
    conn.close()
    assert conn.send("late") is False
    assert conn.take() is None


# --- waking the transport's writer ------------------------------------------------


async def test_wait_outgoing_is_woken_by_send() -> None:
    world = World()
    conn = await world.opened()
    waiter = asyncio.create_task(conn.wait_outgoing(None))
    await until(lambda: len(conn._waiters) == 1, "writer waiting")
    assert not waiter.done()

    conn.send("m")
    assert await waiter is True
    assert conn.take() == "m"


async def test_wait_outgoing_is_woken_by_close() -> None:
    world = World()
    conn = await world.opened()
    waiter = asyncio.create_task(conn.wait_outgoing(None))
    await until(lambda: len(conn._waiters) == 1, "writer waiting")

    conn.close()
    assert await waiter is True
    assert conn.closed


async def test_wait_outgoing_times_out_with_false() -> None:
    world = World()
    conn = await world.opened()
    assert await conn.wait_outgoing(0.01) is False
    assert conn._waiters == []


async def test_wait_outgoing_returns_at_once_when_something_is_queued() -> None:
    world = World()
    conn = await world.opened()
    conn.send("m")
    assert await conn.wait_outgoing(None) is True


async def test_on_queued_is_called_instead_of_waking() -> None:
    world = World()
    conn = await world.opened()
    calls: list[int] = []
    conn.on_queued = lambda: calls.append(len(conn.outbox))
    waiter = asyncio.create_task(conn.wait_outgoing(None))
    await until(lambda: len(conn._waiters) == 1, "writer waiting")

    conn.send("m")
    assert calls == [1]
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done()  # the hook owns waking now

    conn.wake_writer()
    assert await waiter is True


async def test_requeue_goes_first() -> None:
    world = World()
    conn = await world.opened()
    conn.send("a")
    conn.send("b")
    first = conn.take()
    assert first == "a"
    conn.requeue(first)
    assert drain(conn) == ["a", "b"]


async def test_requeue_wakes_the_writer() -> None:
    world = World()
    conn = await world.opened()
    conn.send("a")
    first = conn.take()
    assert first == "a"
    waiter = asyncio.create_task(conn.wait_outgoing(None))
    await until(lambda: len(conn._waiters) == 1, "writer waiting")
    assert not waiter.done()

    conn.requeue(first)
    assert await waiter is True
    assert drain(conn) == ["a"]


async def test_requeue_feeds_a_parked_poll() -> None:
    world = World()
    conn = await world.opened()
    poll = asyncio.create_task(conn.poll(5.0, connected))
    await until(lambda: conn.parked_polls == 1, "poll parked")
    conn.requeue("back")
    assert await poll == "back"


# --- long polls -----------------------------------------------------------------


async def test_poll_timeout_returns_none_and_unparks() -> None:
    world = World()
    conn = await world.opened()
    assert await conn.poll(0.01, connected) is None
    assert conn.parked_polls == 0
    assert conn.may_expire


async def test_poll_with_a_message_queued_returns_at_once() -> None:
    world = World()
    conn = await world.opened()
    conn.send("ready")
    # A timeout far beyond the test's own bound: only an immediate answer passes.
    assert await conn.poll(3600.0, connected) == "ready"
    assert conn.parked_polls == 0


async def test_poll_on_a_closed_session_returns_none_at_once() -> None:
    world = World()
    conn = await world.opened()
    conn.close()
    assert await conn.poll(3600.0, connected) is None


async def test_cancelled_poll_puts_a_handed_message_back() -> None:
    world = World()
    conn = await world.opened()
    poll = asyncio.create_task(conn.poll(5.0, connected))
    await until(lambda: conn.parked_polls == 1, "poll parked")

    assert conn.send("precious") is True  # handed to the poll's future
    assert len(conn.outbox) == 0
    poll.cancel()  # before the poll's task could run again and write it
    with pytest.raises(asyncio.CancelledError):
        await poll

    assert conn.parked_polls == 0
    assert drain(conn) == ["precious"]


async def test_cancelled_poll_without_a_message_leaves_the_queue_alone() -> None:
    world = World()
    conn = await world.opened()
    poll = asyncio.create_task(conn.poll(5.0, connected))
    await until(lambda: conn.parked_polls == 1, "poll parked")
    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    assert conn.parked_polls == 0
    assert conn.take() is None


async def test_polls_beyond_the_bound_answer_empty_oldest_first() -> None:
    world = World(max_polls_per_session=1)
    conn = await world.opened()
    first = asyncio.create_task(conn.poll(5.0, connected))
    await until(lambda: conn.parked_polls == 1, "first poll parked")
    second = asyncio.create_task(conn.poll(5.0, connected))
    assert await first is None
    await until(lambda: conn.parked_polls == 1 and first.done(), "second poll parked")
    conn.send("m")
    assert await second == "m"


# --- closing and finishing --------------------------------------------------------


async def test_close_answers_parked_polls_and_finishes_once() -> None:
    world = World()
    handler = Recorder()
    conn = await world.opened(handler)
    polls = [asyncio.create_task(conn.poll(5.0, connected)) for _ in range(2)]
    await until(lambda: conn.parked_polls == 2, "polls parked")

    conn.close()
    conn.close()  # a second close is a no-op
    assert [await p for p in polls] == [None, None]
    await world.settle()

    assert handler.closed == 1
    assert world.registry.get("s1") is None
    assert len(world.registry) == 0
    assert conn.close_code == CloseReason.NORMAL


async def test_close_code_is_kept_from_the_first_close() -> None:
    world = World()
    conn = await world.opened()
    conn.close(CloseReason.GOING_AWAY)
    conn.close(CloseReason.POLICY)
    assert conn.close_code == CloseReason.GOING_AWAY


async def test_close_while_a_stream_holds_it_waits_for_the_transport() -> None:
    world = World()
    handler = Recorder()
    conn = await world.opened(handler)
    conn.attach(Transport.WEBSOCKET)
    assert conn.attached
    assert not conn.may_expire

    conn.close()
    await world.settle()
    assert conn.closed
    assert handler.closed == 0  # the stream has not let go yet
    assert world.registry.get("s1") is conn

    conn.detach()  # what the transport does when it has finished up...
    await conn.finish()  # ...and then it finishes the session
    await conn.finish()
    assert handler.closed == 1
    assert world.registry.get("s1") is None


async def test_detach_without_close_keeps_the_session() -> None:
    world = World()
    handler = Recorder()
    conn = await world.opened(handler)
    conn.attach(Transport.WEBSOCKET)
    conn.detach()
    await world.settle()
    assert not conn.closed
    assert not conn.attached
    assert conn.may_expire
    assert handler.closed == 0


async def test_finish_runs_on_close_exactly_once() -> None:
    world = World()
    handler = Recorder()
    conn = await world.opened(handler)
    await asyncio.gather(conn.finish(), conn.finish())
    await conn.finish()
    assert handler.closed == 1
    assert conn.closed
    assert world.registry.get("s1") is None


async def test_finish_skips_on_close_when_on_open_never_ran() -> None:
    world = World()
    handler = Recorder()
    conn = world.connection(handler)
    await conn.finish()
    assert handler.opened == 0
    assert handler.closed == 0
    assert world.registry.get("s1") is None


async def test_finish_leaves_the_groups() -> None:
    world = World()
    conn = await world.opened()
    conn.join("room")
    await conn.finish()
    assert world.registry.members("room") == []
    assert conn.groups == set()


# --- the handler lane and the handler boundary -------------------------------------


async def test_handler_lane_keeps_arrival_order() -> None:
    gate = asyncio.Event()
    started: list[str] = []
    finished: list[str] = []

    class Slow(Handler):
        async def on_message(self, conn: Connection, message: str) -> str:
            started.append(message)
            if message == "first":
                await gate.wait()
            finished.append(message)
            return message.upper()

    world = World()
    conn = await world.opened(Slow())
    first = asyncio.create_task(conn.handle_message("first"))
    await until(lambda: started == ["first"], "first message started")
    second = asyncio.create_task(conn.handle_message("second"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == ["first"]  # the second waits in the lane
    assert not second.done()

    gate.set()
    assert await asyncio.gather(first, second) == ["FIRST", "SECOND"]
    assert finished == ["first", "second"]


async def test_a_caller_cancelled_in_the_lane_never_blocks_the_next() -> None:
    """Cancelled while waiting, or after being handed the lane: the lane moves on."""
    gate = asyncio.Event()
    started: list[str] = []
    tasks: dict[str, asyncio.Task[str | None]] = {}

    class Slow(Handler):
        async def on_message(self, conn: Connection, message: str) -> str:
            started.append(message)
            if message == "first":
                await gate.wait()
                # Runs before "handed" can: it is handed the lane, then cancelled.
                asyncio.get_running_loop().call_soon(tasks["handed"].cancel)
            return message

    world = World()
    conn = await world.opened(Slow())
    first = asyncio.create_task(conn.handle_message("first"))
    await until(lambda: started == ["first"], "first message started")
    waiting = asyncio.create_task(conn.handle_message("waiting"))
    handed = tasks["handed"] = asyncio.create_task(conn.handle_message("handed"))
    last = asyncio.create_task(conn.handle_message("last"))
    for _ in range(5):
        await asyncio.sleep(0)
    waiting.cancel()  # cancelled while it waits
    for _ in range(5):
        await asyncio.sleep(0)
    gate.set()
    assert await first == "first"
    assert await last == "last"
    assert waiting.cancelled() and handed.cancelled()
    assert started == ["first", "last"]
    assert await conn.handle_message("after") == "after"  # and the lane is free again


async def test_handle_message_returns_the_reply() -> None:
    world = World()
    conn = await world.opened()
    assert await conn.handle_message("hi") == "echo:hi"


async def test_handle_message_on_a_closed_session_is_none() -> None:
    world = World()
    handler = Recorder()
    conn = await world.opened(handler)
    conn.close()
    assert await conn.handle_message("late") is None
    assert handler.messages == []


class Misbehaving(Handler):
    """Raises, returns a non-str, or hangs, by message; answers ``ok`` otherwise."""

    async def on_message(self, conn: Connection, message: str) -> Any:
        if message == "raise":
            raise ValueError("boom")
        if message == "int":
            return 42
        if message == "hang":
            await asyncio.Event().wait()
        return "ok"


@pytest.mark.parametrize(
    ("message", "logged"),
    [
        ("raise", "handler on_message failed"),
        ("int", "on_message returned int"),
        ("hang", "event=handler_timeout"),
    ],
)
async def test_a_failing_handler_gives_none_logs_and_the_session_goes_on(
    message: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    world = World(handler_timeout=0.05)
    conn = await world.opened(Misbehaving())
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        assert await conn.handle_message(message) is None
    assert any(logged in record.getMessage() for record in caplog.records), caplog.text
    assert not conn.closed
    assert await conn.handle_message("next") == "ok"


async def test_a_plain_function_handler_works() -> None:
    class Plain:
        def on_open(self, conn: Connection) -> None:
            return None

        def on_message(self, conn: Connection, message: str) -> str:
            return message[::-1]

        def on_info(self, conn: Connection, info: Any) -> None:
            return None

        def on_close(self, conn: Connection) -> None:
            return None

    world = World()
    conn = await world.opened(Plain())
    assert await conn.handle_message("abc") == "cba"


async def test_on_open_failure_closes_the_session(caplog: pytest.LogCaptureFixture) -> None:
    class BadOpen(Recorder):
        async def on_open(self, conn: Connection) -> None:
            raise RuntimeError("no")

    world = World()
    handler = BadOpen()
    conn = world.connection(handler)
    with caplog.at_level(logging.ERROR, logger="bullet_py"):
        await conn.open()
    assert conn.closed
    assert "handler on_open failed" in caplog.text
    await world.settle()
    assert world.registry.get("s1") is None
    assert handler.closed == 1  # on_open was called, so on_close is owed


async def test_real_cancellation_passes_through_handle_message() -> None:
    entered = asyncio.Event()

    class Waits(Handler):
        async def on_message(self, conn: Connection, message: str) -> str:
            if message == "wait":
                entered.set()
                await asyncio.Event().wait()
            return "ok"

    world = World()
    conn = await world.opened(Waits())
    task = asyncio.create_task(conn.handle_message("wait"))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    # The lane was released: the session still serves.
    assert await conn.handle_message("next") == "ok"


async def test_handle_info_pushes_a_str_result() -> None:
    class Info(Handler):
        async def on_info(self, conn: Connection, info: Any) -> Any:
            return None if info is None else f"info:{info}"

    world = World()
    conn = await world.opened(Info())
    await conn.handle_info(None)
    assert conn.take() is None
    await conn.handle_info(7)
    assert drain(conn) == ["info:7"]


class SelfBounded(Handler):
    """Bounds its own calls (as a Stream router does): no second timer on on_message."""

    bounds_its_calls = True

    async def on_message(self, conn: Connection, message: str) -> str:
        await asyncio.sleep(0.2)  # the work itself, four times handler_timeout
        return "done"


class NotBounded(SelfBounded):
    bounds_its_calls = False


async def test_a_handler_that_bounds_its_calls_gets_no_timer_on_on_message() -> None:
    world = World(handler_timeout=0.05)
    conn = await world.opened(SelfBounded())
    assert await conn.handle_message("work") == "done"


async def test_control_without_bounds_its_calls_the_timer_applies() -> None:
    world = World(handler_timeout=0.05)
    conn = await world.opened(NotBounded())
    assert await conn.handle_message("work") is None


# --- overflow policies ------------------------------------------------------------


async def test_overflow_close_ends_the_session_with_1008(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World(outbox_max_messages=2, overflow=Overflow.CLOSE)
    handler = Recorder()
    conn = await world.opened(handler)
    assert conn.send("a") and conn.send("b")
    with caplog.at_level(logging.WARNING, logger="bullet_py"):
        assert conn.send("c") is False
    assert "event=queue_overflow" in caplog.text
    assert conn.closed
    assert conn.close_code == CloseReason.POLICY == 1008
    await world.settle()
    assert handler.closed == 1


async def test_overflow_drop_oldest_keeps_the_newest() -> None:
    world = World(outbox_max_messages=2, overflow=Overflow.DROP_OLDEST)
    conn = await world.opened()
    assert conn.send("a") and conn.send("b")
    assert conn.send("c") is True
    assert not conn.closed
    assert drain(conn) == ["b", "c"]


async def test_overflow_drop_newest_refuses_the_new_message() -> None:
    world = World(outbox_max_messages=2, overflow=Overflow.DROP_NEWEST)
    conn = await world.opened()
    assert conn.send("a") and conn.send("b")
    assert conn.send("c") is False
    assert not conn.closed
    assert drain(conn) == ["a", "b"]


# --- groups -----------------------------------------------------------------------


async def test_join_and_leave_groups_through_the_registry() -> None:
    world = World()
    a = await world.opened(sid="a")
    b = await world.opened(sid="b")
    a.join("room")
    b.join("room")
    a.join("other")
    assert {c.session_id for c in world.registry.members("room")} == {"a", "b"}
    assert a.groups == {"room", "other"}

    a.leave("room")
    assert [c.session_id for c in world.registry.members("room")] == ["b"]
    assert a.groups == {"other"}


async def test_a_closing_session_joins_nothing() -> None:
    world = World()
    conn = await world.opened()
    conn.close()
    conn.join("room")
    assert world.registry.members("room") == []
    assert conn.groups == set()
