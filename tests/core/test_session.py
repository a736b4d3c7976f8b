"""The session's rules without I/O: every transition of the table and every decision."""

from __future__ import annotations

import itertools

import pytest

from bullet_py.config import Overflow
from bullet_py.core.negotiate import Transport
from bullet_py.core.outbox import Outbox
from bullet_py.core.session import (
    REFUSAL_STATUS,
    TRANSITIONS,
    Delivery,
    Event,
    SessionCore,
    SessionStateError,
    State,
    StreamDecision,
)


class FakePoll:
    """A parked poll that records its answer."""

    def __init__(self, connected: bool = True) -> None:
        self.connected = connected
        self.answers: list[str | None] = []

    def is_open(self) -> bool:
        return self.connected and not self.answers

    def answer(self, message: str | None) -> None:
        self.answers.append(message)


def core(
    transport: Transport = Transport.POLL,
    *,
    overflow: Overflow = Overflow.CLOSE,
    max_messages: int = 10,
    max_chars: int = 1000,
) -> SessionCore:
    return SessionCore(transport, Outbox(max_messages, max_chars), overflow)


def in_state(state: State, transport: Transport = Transport.EVENTSOURCE) -> SessionCore:
    """A core brought to ``state`` by legal events only."""
    c = core(transport)
    if state is State.DETACHED:
        return c
    if state is State.ATTACHED:
        c.attach(transport)
    elif state is State.STREAM_REFUSED:
        c.attach(transport)
        c.cannot_carry()
        c.detach()
    elif state is State.CLOSING:
        c.attach(transport)
        c.close(1000)
    elif state is State.CLOSED:
        c.close(1000)
        c.finish()
    assert c.state is state
    return c


# --- the table ------------------------------------------------------------------


def fire(c: SessionCore, event: Event) -> None:
    if event is Event.ATTACH:
        c.attach(Transport.WEBSOCKET)
    elif event is Event.DETACH:
        c.detach()
    elif event is Event.CANNOT_CARRY:
        c.cannot_carry()
    elif event is Event.CLOSE:
        c.close(1001)
    else:
        c.finish()


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_state_and_event_follows_the_table(state: State, event: Event) -> None:
    c = in_state(state)
    if state is State.ATTACHED and event is Event.ATTACH:
        with pytest.raises(SessionStateError):
            fire(c, event)  # a held session is never attached twice
        return
    expected = TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(SessionStateError):
            fire(c, event)
        assert c.state is state  # a refused event changes nothing
    else:
        fire(c, event)
        assert c.state is expected


def test_the_table_has_no_exit_from_closed() -> None:
    assert all(
        after is State.CLOSED
        for (before, _), after in TRANSITIONS.items()
        if before is State.CLOSED
    )


def test_attach_holds_and_detach_lets_go() -> None:
    c = core(Transport.POLL)
    c.attach(Transport.WEBSOCKET)
    assert c.held and c.transport is Transport.WEBSOCKET and c.state is State.ATTACHED
    c.detach()
    assert not c.held and c.state is State.DETACHED


def test_a_session_closed_while_held_stays_held_until_its_stream_lets_go() -> None:
    c = in_state(State.ATTACHED, Transport.WEBSOCKET)
    assert c.close(1008) is True
    assert c.state is State.CLOSING and c.held and c.close_code == 1008
    c.detach()
    assert not c.held and c.state is State.CLOSING
    assert c.finish() is True and c.state is State.CLOSED


def test_close_and_finish_count_once() -> None:
    c = core()
    assert c.close(1000) is True
    assert c.close(1001) is False
    assert c.close_code == 1000
    assert c.finish() is True
    assert c.finish() is False


# --- decisions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "served_by", "asked", "expected"),
    [
        (State.DETACHED, Transport.EVENTSOURCE, Transport.EVENTSOURCE, StreamDecision.RESUME),
        (State.DETACHED, Transport.POLL, Transport.EVENTSOURCE, StreamDecision.RESUME),
        (State.DETACHED, Transport.WEBSOCKET, Transport.WEBSOCKET, StreamDecision.RESUME),
        (State.DETACHED, Transport.EVENTSOURCE, Transport.WEBSOCKET, StreamDecision.RESUME),
        (State.ATTACHED, Transport.EVENTSOURCE, Transport.EVENTSOURCE, StreamDecision.PROBE),
        (State.ATTACHED, Transport.WEBSOCKET, Transport.WEBSOCKET, StreamDecision.PROBE),
        (State.STREAM_REFUSED, Transport.EVENTSOURCE, Transport.EVENTSOURCE, StreamDecision.REFUSE),
        (State.STREAM_REFUSED, Transport.EVENTSOURCE, Transport.WEBSOCKET, StreamDecision.RESUME),
        (State.CLOSING, Transport.EVENTSOURCE, Transport.EVENTSOURCE, StreamDecision.FRESH),
        (State.CLOSED, Transport.EVENTSOURCE, Transport.EVENTSOURCE, StreamDecision.FRESH),
    ],
)
def test_stream_request_decisions(
    state: State, served_by: Transport, asked: Transport, expected: StreamDecision
) -> None:
    assert in_state(state, served_by).stream_request(asked) is expected


def test_the_refusal_is_406() -> None:
    assert REFUSAL_STATUS == 406


def test_a_session_a_poll_waits_on_belongs_to_that_polling_tab() -> None:
    c = core(Transport.POLL)
    c.park(FakePoll(), 2)
    assert c.stream_request(Transport.WEBSOCKET) is StreamDecision.FRESH
    assert c.stream_request(Transport.EVENTSOURCE) is StreamDecision.FRESH


def test_a_poll_never_takes_from_a_live_stream() -> None:
    assert not in_state(State.ATTACHED, Transport.EVENTSOURCE).poll_allowed()
    assert not in_state(State.ATTACHED, Transport.WEBSOCKET).poll_allowed()
    assert in_state(State.DETACHED, Transport.EVENTSOURCE).poll_allowed()
    assert in_state(State.STREAM_REFUSED, Transport.EVENTSOURCE).poll_allowed()


def test_may_expire_only_when_open_unheld_and_without_polls() -> None:
    assert core().may_expire
    assert not in_state(State.ATTACHED).may_expire
    assert in_state(State.STREAM_REFUSED).may_expire
    assert not in_state(State.CLOSING).may_expire
    c = core()
    c.park(FakePoll(), 2)
    assert not c.may_expire


# --- pushes and polls ---------------------------------------------------------------


def test_a_push_goes_to_the_oldest_open_poll() -> None:
    c = core()
    first, second = FakePoll(), FakePoll()
    c.park(first, 2)
    c.park(second, 2)
    assert c.push("m") is Delivery.HANDED
    assert first.answers == ["m"] and second.answers == []
    assert c.polls == [second] and not c.outbox


def test_a_poll_whose_client_left_is_answered_empty_and_skipped() -> None:
    c = core()
    gone, live = FakePoll(connected=False), FakePoll()
    c.park(gone, 2)
    c.park(live, 2)
    assert c.push("m") is Delivery.HANDED
    assert gone.answers == [None] and live.answers == ["m"]


def test_an_empty_message_never_goes_to_a_poll() -> None:
    c = core()
    poll = FakePoll()
    c.park(poll, 2)
    assert c.push("") is Delivery.QUEUED
    assert poll.answers == [] and not c.outbox  # dropped: no XHR answer can carry it
    c.close(1000)
    c2 = core()
    c2.push("")
    c2.push("x")
    assert c2.take_for_xhr() == "x"  # an XHR answer skips it
    assert not c2.outbox


def test_with_messages_queued_a_push_queues_behind_them_and_polls_are_fed_in_order() -> None:
    c = core()
    assert c.push("a") is Delivery.QUEUED
    poll = FakePoll()
    c.park(poll, 2)
    assert c.push("b") is Delivery.QUEUED  # order: a before b
    assert poll.answers == ["a"] and list(c.outbox) == ["b"]


def test_parked_polls_are_capped_oldest_answered_empty() -> None:
    c = core()
    polls = [FakePoll() for _ in range(3)]
    for poll in polls:
        c.park(poll, 2)
    assert polls[0].answers == [None] and c.polls == polls[1:]


def test_unpark_forgets_a_poll_once() -> None:
    c = core()
    poll = FakePoll()
    c.park(poll, 2)
    c.unpark(poll)
    c.unpark(poll)
    assert c.polls == []


def test_requeue_puts_the_message_first_and_feeds_a_waiting_poll() -> None:
    c = core()
    c.push("second")
    c.outbox.take()
    poll = FakePoll()
    c.polls.append(poll)
    c.requeue("first")
    assert poll.answers == ["first"]


def test_close_answers_every_parked_poll_empty_and_refuses_pushes() -> None:
    c = core()
    polls = [FakePoll(), FakePoll()]
    for poll in polls:
        c.park(poll, 2)
    c.close(1000)
    assert [p.answers for p in polls] == [[None], [None]]
    assert c.push("late") is Delivery.REFUSED and not c.outbox


@pytest.mark.parametrize(
    ("overflow", "expected", "queue"),
    [
        (Overflow.CLOSE, Delivery.OVERFLOW_CLOSE, ["a", "b"]),
        (Overflow.DROP_NEWEST, Delivery.REFUSED, ["a", "b"]),
        (Overflow.DROP_OLDEST, Delivery.DROPPED_OLDEST, ["b", "c"]),
    ],
)
def test_overflow_follows_the_policy(
    overflow: Overflow, expected: Delivery, queue: list[str]
) -> None:
    c = core(overflow=overflow, max_messages=2)
    assert c.push("a") is Delivery.QUEUED
    assert c.push("b") is Delivery.QUEUED
    assert c.push("c") is expected
    assert list(c.outbox) == queue


# --- counting clients: what was sent and not received goes again ------------------


def counting(max_messages: int = 10, max_chars: int = 1000) -> SessionCore:
    c = core(Transport.WEBSOCKET)
    assert c.count_from(0, max_messages, max_chars)
    return c


def sent(c: SessionCore, *messages: str) -> None:
    for message in messages:
        c.push(message)
        assert c.take() == message


def test_without_a_count_nothing_is_kept() -> None:
    c = core()
    sent(c, "a", "b")
    assert c.replay is None


def test_a_reconnect_gets_what_it_missed_first_in_order_once() -> None:
    c = counting()
    sent(c, "1", "2", "3")
    c.push("4")  # still queued
    assert c.count_from(1, 10, 1000)
    assert list(c.outbox) == ["2", "3", "4"]
    assert [c.take(), c.take(), c.take()] == ["2", "3", "4"]
    assert c.count_from(4, 10, 1000)  # everything arrived: nothing again
    assert not c.outbox


def test_a_count_beyond_what_was_sent_or_older_than_the_buffer_is_a_gap() -> None:
    c = counting(max_messages=2)
    sent(c, "1", "2", "3")  # "1" is no longer kept
    assert not c.count_from(4, 2, 1000)
    assert not c.count_from(0, 2, 1000)
    assert c.count_from(1, 2, 1000)
    assert list(c.outbox) == ["2", "3"]


def test_the_buffer_is_bounded_in_characters_too() -> None:
    c = counting(max_chars=5)
    sent(c, "aaa", "bbb")  # 6 characters: "aaa" dropped
    assert c.replay is not None and len(c.replay) == 1
    assert not c.count_from(0, 10, 5)


def test_a_failed_write_put_back_is_not_counted_twice() -> None:
    c = counting()
    sent(c, "1")
    c.push("2")
    taken = c.take()
    assert taken == "2"
    c.requeue(taken)  # the write failed
    assert c.replay is not None and c.replay.sent == 1
    assert c.take() == "2"
    assert c.count_from(2, 10, 1000) and not c.outbox


def test_a_message_handed_to_a_poll_or_sent_directly_counts() -> None:
    c = counting()
    poll = FakePoll()
    c.park(poll, 2)
    c.push("to the poll")
    c.sent_directly("a reply")
    assert c.count_from(0, 10, 1000)
    assert list(c.outbox) == ["to the poll", "a reply"]


def test_anonymous_means_never_heard_from_and_unused_now() -> None:
    """Evictable when the table is full (docs/robustness.md item 76)."""
    from bullet_py.config import Overflow
    from bullet_py.core.negotiate import Transport
    from bullet_py.core.outbox import Outbox
    from bullet_py.core.session import SessionCore

    core = SessionCore(Transport.EVENTSOURCE, Outbox(10, 1000), Overflow.CLOSE)
    assert core.anonymous
    core.attach(Transport.EVENTSOURCE)
    assert not core.anonymous  # a stream holds it
    core.detach()
    assert core.anonymous
    core.heard_from = True
    assert not core.anonymous  # the client spoke: established for good
    fresh = SessionCore(Transport.POLL, Outbox(10, 1000), Overflow.CLOSE)
    fresh.close(1000)
    assert not fresh.anonymous  # closing: nothing to evict
