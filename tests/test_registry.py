"""Registry: the sessions of one endpoint, pending ids, groups, expiry and background work."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bullet_py import Connection, Handler, Options, Transport, logs
from bullet_py import registry as registry_module
from bullet_py.hub import Hub
from bullet_py.registry import Registry, new_session_id

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(autouse=True)
def fresh_log_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """log_event is rate-limited per event name; give each test a full budget."""
    monkeypatch.setattr(logs, "_counts", {})


class Clock:
    """Stands in for the ``time`` module the registry reads (the loop keeps the real one)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(registry_module, "time", fake)
    return fake


class Closes(Handler):
    def __init__(self) -> None:
        self.closed = 0

    async def on_close(self, conn: Connection) -> None:
        self.closed += 1


def make(registry: Registry, sid: str, *, add: bool = True) -> Connection:
    conn = Connection(
        session_id=sid,
        transport=Transport.POLL,
        handler=Closes(),
        registry=registry,
        options=registry.options,
        hub=Hub(registry),
    )
    if add:
        registry.add(conn)
    return conn


def world(**options: Any) -> Registry:
    return Registry(Options(**options))


async def until(predicate: Any, what: str) -> None:
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what} never became true")


# --- pending ids ------------------------------------------------------------------


def test_new_session_ids_are_long_and_distinct() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 for i in ids)


def test_a_pending_id_is_claimed_once(clock: Clock) -> None:
    registry = world()
    sid = registry.issue_pending()
    assert registry.pending_count == 1
    assert registry.claim_pending(sid) is True
    assert registry.claim_pending(sid) is False
    assert registry.pending_count == 0


def test_unknown_or_empty_ids_are_not_claimed(clock: Clock) -> None:
    registry = world()
    registry.issue_pending()
    assert registry.claim_pending(None) is False
    assert registry.claim_pending("") is False
    assert registry.claim_pending("never-issued") is False
    assert registry.pending_count == 1


def test_a_pending_id_expires_after_its_ttl(clock: Clock) -> None:
    registry = world(pending_session_ttl=30.0)
    early = registry.issue_pending()
    late = registry.issue_pending()
    clock.now += 29.9
    assert registry.claim_pending(early) is True
    clock.now += 0.1  # exactly the ttl: expired
    assert registry.claim_pending(late) is False
    assert registry.pending_count == 0


def test_sweep_forgets_expired_pending_ids_only(clock: Clock) -> None:
    registry = world(pending_session_ttl=30.0)
    old = registry.issue_pending()
    clock.now += 20.0
    young = registry.issue_pending()
    clock.now += 15.0  # old is 35 s old, young 15 s
    assert registry.sweep() == 0  # pending ids are not sessions: nothing closed
    assert registry.pending_count == 1
    assert registry.claim_pending(old) is False
    assert registry.claim_pending(young) is True


def test_pending_ids_are_bounded_oldest_evicted(clock: Clock) -> None:
    registry = world(max_pending_sessions=2)
    first = registry.issue_pending()
    second = registry.issue_pending()
    third = registry.issue_pending()
    assert registry.pending_count == 2
    assert registry.claim_pending(first) is False
    assert registry.claim_pending(second) is True
    assert registry.claim_pending(third) is True


# --- sessions ---------------------------------------------------------------------


async def test_add_remove_len_iter_get_full() -> None:
    registry = world(max_sessions=2)
    assert len(registry) == 0
    assert not registry.full
    a = make(registry, "a")
    assert not registry.full
    b = make(registry, "b")
    assert registry.full
    assert len(registry) == 2
    assert list(registry) == [a, b]
    assert registry.get("a") is a
    assert registry.get("zzz") is None
    assert registry.get(None) is None
    assert registry.get("") is None
    assert registry.opened == 2

    registry.remove(a)
    assert registry.get("a") is None
    assert len(registry) == 1
    assert not registry.full
    assert registry.finished == 1
    registry.remove(a)  # twice: counted once
    assert registry.finished == 1


async def test_iterating_is_safe_while_sessions_leave() -> None:
    registry = world()
    conns = [make(registry, sid) for sid in "abc"]
    for conn in registry:
        registry.remove(conn)
    assert len(registry) == 0
    assert registry.finished == len(conns)


async def test_remove_leaves_a_newer_session_with_the_same_id() -> None:
    registry = world()
    old = make(registry, "same")
    new = make(registry, "same")  # replaced the old entry
    registry.remove(old)
    assert registry.get("same") is new
    assert registry.finished == 0


# --- groups -----------------------------------------------------------------------


async def test_groups_join_leave_members() -> None:
    registry = world()
    a, b, c = (make(registry, sid) for sid in "abc")
    registry.join(a, "room")
    registry.join(b, "room")
    registry.join(b, "room")  # idempotent
    assert {conn.session_id for conn in registry.members("room")} == {"a", "b"}
    assert {conn.session_id for conn in registry.members(None)} == {"a", "b", "c"}
    assert registry.members("nobody") == []
    assert b.groups == {"room"}

    registry.leave(a, "room")
    assert [conn.session_id for conn in registry.members("room")] == ["b"]
    assert a.groups == set()
    registry.leave(c, "room")  # never joined: harmless
    assert [conn.session_id for conn in registry.members("room")] == ["b"]


async def test_empty_groups_are_cleaned_up() -> None:
    registry = world()
    a, b = make(registry, "a"), make(registry, "b")
    registry.join(a, "room")
    registry.join(b, "room")
    registry.leave(a, "room")
    assert "room" in registry._groups
    registry.remove(b)  # removal leaves every group
    assert "room" not in registry._groups
    assert b.groups == set()


async def test_members_skip_ids_without_a_live_session() -> None:
    registry = world()
    ghost = make(registry, "ghost", add=False)
    registry.join(ghost, "room")
    live = make(registry, "live")
    registry.join(live, "room")
    assert registry.members("room") == [live]


# --- sweep ------------------------------------------------------------------------


async def test_sweep_closes_only_idle_sessions_that_may_expire() -> None:
    registry = world(session_idle_timeout=10.0)
    idle = make(registry, "idle")
    recent = make(registry, "recent")
    attached = make(registry, "attached")
    polling = make(registry, "polling")
    attached.attach(Transport.WEBSOCKET)
    poll = asyncio.create_task(polling.poll(5.0, lambda: True))
    await until(lambda: polling.parked_polls == 1, "poll parked")
    past = time.monotonic() - 60.0
    for conn in (idle, attached, polling):
        conn.last_active = past  # idle for a minute, as far as the clock goes

    assert registry.sweep() == 1
    assert idle.closed
    assert not recent.closed
    assert not attached.closed
    assert not polling.closed
    assert registry.sweep() == 0  # a closing session is not closed twice

    poll.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poll
    await registry.drain_tasks(5.0)
    assert registry.get("idle") is None
    assert {conn.session_id for conn in registry} == {"recent", "attached", "polling"}


async def test_sweep_uses_the_idle_timeout_boundary() -> None:
    registry = world(session_idle_timeout=10.0)
    conn = make(registry, "s")
    conn.last_active = time.monotonic() - 9.0
    assert registry.sweep() == 0
    conn.last_active = time.monotonic() - 10.0
    assert registry.sweep() == 1


# --- waiting for the end -------------------------------------------------------------


async def test_wait_empty() -> None:
    registry = world()
    assert await registry.wait_empty(0.01) is True
    conn = make(registry, "s")
    assert await registry.wait_empty(0.01) is False

    waiter = asyncio.create_task(registry.wait_empty(5.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    registry.remove(conn)
    assert await waiter is True


async def test_spawn_keeps_a_reference_and_drain_waits() -> None:
    registry = world()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "done"

    task = registry.spawn(work())
    assert task in registry._tasks
    await registry.drain_tasks(0.01)  # bounded: returns while the work still waits
    assert not task.done()

    gate.set()
    await registry.drain_tasks(5.0)
    assert task.done()
    assert task.result() == "done"
    assert task not in registry._tasks


async def test_drain_with_nothing_to_wait_for_returns() -> None:
    registry = world()
    await registry.drain_tasks(0.0)


# --- fair shares of a full table (docs/robustness.md item 76) ------------------------


def made_at(registry: Registry, sid: str, address: str) -> Connection:
    conn = Connection(
        session_id=sid,
        transport=Transport.EVENTSOURCE,
        handler=Closes(),
        registry=registry,
        options=registry.options,
        hub=Hub(registry),
        address=address,
    )
    conn.core.opened = True  # as after on_open: on_close is owed
    registry.add(conn)
    return conn


async def test_full_table_evicts_the_newest_anonymous_session_of_the_heaviest_address() -> None:
    from bullet_py.core.fairshare import Room

    registry = world(max_sessions=4)
    spoke = made_at(registry, "a1", "heavy")
    spoke.core.heard_from = True  # established: never evicted
    older = made_at(registry, "a2", "heavy")
    newest = made_at(registry, "a3", "heavy")
    made_at(registry, "b1", "light")
    assert registry.held_by("heavy") == 3 and registry.full
    assert registry.make_room("heavy") is Room.REFUSE_FULL  # at its share and more
    assert registry.make_room("newcomer") is Room.ADMIT
    assert newest.closed and registry.get("a3") is None  # the newest anonymous one
    assert not older.closed and not spoke.closed
    assert registry.held_by("heavy") == 2 and len(registry) == 3
    await registry.drain_tasks(1.0)  # its close callback ran
    assert newest.handler.closed == 1  # type: ignore[attr-defined]


async def test_full_table_of_established_sessions_refuses_everyone() -> None:
    from bullet_py.core.fairshare import Room

    registry = world(max_sessions=2)
    for sid in ("a1", "a2"):
        made_at(registry, sid, "heavy").core.heard_from = True
    assert registry.make_room("newcomer") is Room.REFUSE_FULL
    assert len(registry) == 2


async def test_per_address_cap_and_counts_follow_removal() -> None:
    from bullet_py.core.fairshare import Room

    registry = world(max_sessions_per_address=2)
    first = made_at(registry, "a1", "x")
    made_at(registry, "a2", "x")
    assert registry.make_room("x") is Room.REFUSE_ADDRESS
    registry.remove(first)
    assert registry.held_by("x") == 1
    assert registry.make_room("x") is Room.ADMIT
