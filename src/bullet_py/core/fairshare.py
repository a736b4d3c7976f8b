"""Who may start a session when the table is full (no I/O): fair shares per client address.

docs/robustness.md item 76. Every client address gets an equal share of
``max_sessions``. When the table is full, an address already at its share is
refused; one under it may take the place of the newest *anonymous* session
(core.session: never heard from, unused now) of the heaviest address, if that
address is over its share. Established sessions are never evicted, so an
attacker filling the table from a few addresses locks out only himself.
"""

from __future__ import annotations

import enum


class Room(enum.Enum):
    """The answer to "may this address start one more session?"."""

    ADMIT = "admit"
    EVICT = "evict"  # admit after closing the heaviest address's newest anonymous session
    REFUSE_ADDRESS = "address_cap"  # at max_sessions_per_address
    REFUSE_FULL = "full"  # the table is full and this address has its share


def make_room(
    *,
    held: int,
    total: int,
    capacity: int,
    addresses: int,
    heaviest: int,
    per_address: int | None = None,
) -> Room:
    """Decide one new session of an address that holds ``held`` of the ``total`` live ones.

    Args:
        held: live sessions of the requesting address.
        total: live sessions in the table.
        capacity: ``max_sessions``.
        addresses: addresses holding at least one session.
        heaviest: the most sessions any one address holds.
        per_address: ``max_sessions_per_address`` (None: only the fair share).
    """
    if per_address is not None and held >= per_address:
        return Room.REFUSE_ADDRESS
    if total < capacity:
        return Room.ADMIT
    active = addresses + (0 if held else 1)  # the newcomer has a share too
    share = capacity / max(1, active)
    if held + 1 > share:
        return Room.REFUSE_FULL
    if heaviest > share:
        return Room.EVICT
    return Room.REFUSE_FULL
