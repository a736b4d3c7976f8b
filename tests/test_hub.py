"""Hub: pushes to one session, a group or everyone, here and through a Broker."""

from __future__ import annotations

from typing import Any

import pytest

from bullet_py import CloseReason, Connection, Handler, Options, Overflow, Transport
from bullet_py.backends.base import Broker, Deliver, Envelope, Kind
from bullet_py.hub import Hub
from bullet_py.registry import Registry

pytestmark = pytest.mark.timeout(10)


class Informed(Handler):
    """Records on_info payloads and answers each with a message."""

    def __init__(self) -> None:
        self.infos: list[Any] = []

    async def on_info(self, conn: Connection, info: Any) -> str | None:
        self.infos.append(info)
        return None if info is None else f"info:{info}"

    async def on_message(self, conn: Connection, message: str) -> str | None:
        return f"echo:{message}"


class RecordingBroker(Broker):
    """A distributed broker that keeps what it publishes and the deliver callback."""

    def __init__(self) -> None:
        self.published: list[Envelope] = []
        self.deliver: Deliver | None = None
        self.closed = False

    async def start(self, deliver: Deliver) -> None:
        self.deliver = deliver

    async def publish(self, envelope: Envelope) -> None:
        self.published.append(envelope)

    async def close(self) -> None:
        self.closed = True


class World:
    def __init__(self, broker: Broker | None = None, **options: Any) -> None:
        self.options = Options(**options)
        self.registry = Registry(self.options)
        self.hub = Hub(self.registry, broker)

    async def session(self, sid: str, *groups: str) -> Connection:
        conn = Connection(
            session_id=sid,
            transport=Transport.POLL,
            handler=Informed(),
            registry=self.registry,
            options=self.options,
            hub=self.hub,
        )
        self.registry.add(conn)
        await conn.open()
        for group in groups:
            conn.join(group)
        return conn

    async def settle(self) -> None:
        await self.registry.drain_tasks(5.0)


def drain(conn: Connection) -> list[str]:
    out = []
    while (message := conn.take()) is not None:
        out.append(message)
    return out


# --- one process (the memory broker) ------------------------------------------------


async def test_send_to_a_local_session() -> None:
    w = World()
    conn = await w.session("a")
    assert await w.hub.send("a", "hello") is True
    assert drain(conn) == ["hello"]


async def test_send_to_an_unknown_session_is_false() -> None:
    w = World()
    await w.session("a")
    assert w.hub.broker.distributed is False
    assert await w.hub.send("nobody", "hello") is False


async def test_send_to_a_closed_session_is_false() -> None:
    w = World()
    conn = await w.session("a")
    conn.close()
    assert await w.hub.send("a", "hello") is False


async def test_broadcast_counts_and_honours_group_and_exclude() -> None:
    w = World()
    a = await w.session("a", "room")
    b = await w.session("b", "room")
    c = await w.session("c")

    assert await w.hub.broadcast("all") == 3
    assert await w.hub.broadcast("room", group="room") == 2
    assert await w.hub.broadcast("not-a", group="room", exclude="a") == 1
    assert await w.hub.broadcast("not-c", exclude="c") == 2
    assert await w.hub.broadcast("void", group="empty") == 0

    assert drain(a) == ["all", "room", "not-c"]
    assert drain(b) == ["all", "room", "not-a", "not-c"]
    assert drain(c) == ["all"]


async def test_broadcast_does_not_count_sessions_that_refuse() -> None:
    w = World()
    await w.session("a")
    closed = await w.session("b")
    closed.close()
    assert await w.hub.broadcast("m") == 1


async def test_info_runs_on_info_and_pushes_its_result() -> None:
    w = World()
    conn = await w.session("a")
    assert await w.hub.info("a", 42) is True
    await w.settle()
    assert conn.handler.infos == [42]  # type: ignore[attr-defined]
    assert drain(conn) == ["info:42"]

    assert await w.hub.info("a", None) is True  # None: on_info runs, nothing pushed
    await w.settle()
    assert drain(conn) == []
    assert await w.hub.info("nobody", 1) is False


async def test_handle_forwarded_runs_the_message_in_a_local_session() -> None:
    w = World()
    conn = await w.session("a")
    assert await w.hub.handle_forwarded("a", "hi") == (True, "echo:hi")
    assert await w.hub.handle_forwarded("nobody", "hi") == (False, None)
    conn.close()
    assert await w.hub.handle_forwarded("a", "hi") == (False, None)


@pytest.mark.parametrize(
    ("overflow", "closes"),
    [(Overflow.CLOSE, True), (Overflow.DROP_OLDEST, False), (Overflow.DROP_NEWEST, False)],
)
async def test_queue_overflowed_applies_the_close_policy_only(
    overflow: Overflow, closes: bool
) -> None:
    w = World(overflow=overflow)
    conn = await w.session("a")
    w.hub.queue_overflowed("a")
    w.hub.queue_overflowed("nobody")
    assert conn.closed is closes
    if closes:
        assert conn.close_code == CloseReason.POLICY


# --- several processes (a distributed broker) ----------------------------------------


async def test_start_hands_the_deliver_callback_and_close_closes_the_broker() -> None:
    broker = RecordingBroker()
    w = World(broker)
    assert w.hub.store is w.hub.local_store  # a broker without a store: sessions stay here
    await w.hub.start()
    assert broker.deliver is not None
    await w.hub.close()
    assert broker.closed


async def test_send_to_an_unknown_id_publishes_a_send_envelope() -> None:
    broker = RecordingBroker()
    w = World(broker)
    await w.hub.start()
    assert await w.hub.send("elsewhere", "hello") is False
    assert broker.published == [
        Envelope(Kind.SEND, "hello", session_id="elsewhere", origin=w.hub.process_id)
    ]


async def test_send_to_a_local_session_publishes_nothing() -> None:
    broker = RecordingBroker()
    w = World(broker)
    await w.hub.start()
    conn = await w.session("a")
    assert await w.hub.send("a", "hello") is True
    assert broker.published == []
    assert drain(conn) == ["hello"]


async def test_broadcast_publishes_once_and_delivers_locally() -> None:
    broker = RecordingBroker()
    w = World(broker)
    await w.hub.start()
    a = await w.session("a", "room")
    await w.session("b")
    assert await w.hub.broadcast("m", group="room", exclude="b") == 1
    assert broker.published == [
        Envelope(Kind.BROADCAST, "m", group="room", exclude="b", origin=w.hub.process_id)
    ]
    assert drain(a) == ["m"]


async def test_info_to_an_unknown_id_publishes_an_info_envelope() -> None:
    broker = RecordingBroker()
    w = World(broker)
    await w.hub.start()
    assert await w.hub.info("elsewhere", {"k": 1}) is False
    assert broker.published == [
        Envelope(Kind.INFO, session_id="elsewhere", info={"k": 1}, origin=w.hub.process_id)
    ]


async def test_envelopes_from_another_process_are_delivered_here() -> None:
    broker = RecordingBroker()
    w = World(broker)
    await w.hub.start()
    assert broker.deliver is not None
    a = await w.session("a", "room")
    b = await w.session("b", "room")
    c = await w.session("c")

    broker.deliver(Envelope(Kind.SEND, "direct", session_id="a", origin="other"))
    broker.deliver(Envelope(Kind.SEND, "lost", session_id="nobody", origin="other"))
    broker.deliver(Envelope(Kind.BROADCAST, "group", group="room", exclude="b", origin="other"))
    broker.deliver(Envelope(Kind.BROADCAST, "everyone", origin="other"))
    broker.deliver(Envelope(Kind.INFO, session_id="c", info="x", origin="other"))
    broker.deliver(Envelope(Kind.INFO, session_id="nobody", info="y", origin="other"))
    await w.settle()

    assert drain(a) == ["direct", "group", "everyone"]
    assert drain(b) == ["everyone"]
    assert drain(c) == ["everyone", "info:x"]
    assert broker.published == []  # delivering never republishes


async def test_the_hubs_own_envelopes_are_ignored() -> None:
    broker = RecordingBroker()
    w = World(broker)
    await w.hub.start()
    assert broker.deliver is not None
    a = await w.session("a", "room")
    own = w.hub.process_id

    broker.deliver(Envelope(Kind.SEND, "echoed", session_id="a", origin=own))
    broker.deliver(Envelope(Kind.BROADCAST, "echoed", origin=own))
    broker.deliver(Envelope(Kind.INFO, session_id="a", info="echoed", origin=own))
    await w.settle()

    assert drain(a) == []
    assert a.handler.infos == []  # type: ignore[attr-defined]


async def test_two_hubs_have_distinct_process_ids() -> None:
    assert World().hub.process_id != World().hub.process_id
