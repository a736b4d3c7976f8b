from bullet_py.core.outbox import Offer, Outbox, when_full


def test_fifo_order():
    box = Outbox(10, 1000)
    for i in range(5):
        assert box.offer(str(i), drop_oldest=False) is Offer.QUEUED
    assert [box.take() for _ in range(5)] == ["0", "1", "2", "3", "4"]
    assert box.take() is None


def test_count_bound_refuses_newest():
    box = Outbox(2, 1000)
    box.offer("a", drop_oldest=False)
    box.offer("b", drop_oldest=False)
    assert box.offer("c", drop_oldest=False) is Offer.REFUSED
    assert list(box) == ["a", "b"]
    assert box.dropped == 1


def test_drop_oldest_policy():
    box = Outbox(2, 1000)
    for m in "abc":
        box.offer(m, drop_oldest=True)
    assert list(box) == ["b", "c"]
    assert box.dropped == 1


def test_char_bound():
    box = Outbox(100, 10)
    assert box.offer("x" * 6, drop_oldest=False) is Offer.QUEUED
    assert box.offer("y" * 5, drop_oldest=False) is Offer.REFUSED
    assert box.offer("y" * 5, drop_oldest=True) is Offer.DROPPED_OLDEST
    assert list(box) == ["yyyyy"] and box.chars == 5
    assert box.offer("z" * 11, drop_oldest=True) is Offer.REFUSED  # can never fit


def test_requeue_goes_first_and_is_never_refused():
    box = Outbox(1, 1000)
    box.offer("b", drop_oldest=False)
    box.requeue("a")
    assert len(box) == 2 and box.peek() == "a"
    assert [box.take(), box.take()] == ["a", "b"]
    assert box.chars == 0


def test_clear_counts():
    box = Outbox(10, 100)
    box.offer("a", drop_oldest=False)
    box.offer("b", drop_oldest=False)
    assert box.clear() == 2 and not box and box.chars == 0


def test_when_full_is_the_one_overflow_rule():
    assert when_full(5, 10, drop_oldest=True) is Offer.DROPPED_OLDEST
    assert when_full(10, 10, drop_oldest=True) is Offer.DROPPED_OLDEST
    assert when_full(11, 10, drop_oldest=True) is Offer.REFUSED  # can never fit
    assert when_full(5, 10, drop_oldest=False) is Offer.REFUSED


def test_chars_are_code_points():
    box = Outbox(100, 3)
    assert box.offer("é😀\ud800", drop_oldest=False) is Offer.QUEUED
    assert box.offer("x", drop_oldest=False) is Offer.REFUSED
    assert box.chars == 3
