"""Fair shares of a full session table (docs/robustness.md item 76), as a pure decision."""

from __future__ import annotations

from bullet_py.core.fairshare import Room, make_room


def decide(**kw: int | None) -> Room:
    base: dict[str, int | None] = dict(
        held=0, total=0, capacity=100, addresses=0, heaviest=0, per_address=None
    )
    base.update(kw)
    return make_room(**base)  # type: ignore[arg-type]


def test_room_left_admits_anyone_under_the_per_address_cap() -> None:
    assert decide(held=50, total=99, addresses=1, heaviest=50) is Room.ADMIT
    assert decide(held=10, total=20, per_address=10) is Room.REFUSE_ADDRESS


def test_full_table_newcomer_evicts_from_an_address_over_its_share() -> None:
    # One address holds all 100; a newcomer's share is 50, the heavy one is over it.
    assert decide(held=0, total=100, addresses=1, heaviest=100) is Room.EVICT


def test_full_table_an_address_at_its_share_is_refused() -> None:
    assert decide(held=100, total=100, addresses=1, heaviest=100) is Room.REFUSE_FULL
    assert decide(held=50, total=100, addresses=2, heaviest=50) is Room.REFUSE_FULL


def test_full_table_shared_evenly_refuses_everyone() -> None:
    # 100 addresses with one each: the newcomer's share is under 1, nobody is over.
    assert decide(held=0, total=100, addresses=100, heaviest=1) is Room.REFUSE_FULL
    # 4 addresses of 25: a fifth's share is 20, the heaviest (25) is over it.
    assert decide(held=0, total=100, addresses=4, heaviest=25) is Room.EVICT
