"""Taking over a parked session whose home worker died: the pushes it never applied.

Every push to a session of another worker goes over the bus to its home,
which appends it to the session's queue and records the entry's id there
(``bid``). When the home dies, the pushes made meanwhile (by any process) are
still on the bus, after that id. The worker taking the session over reads
them back, in order, and appends them; while it does, the entries its own
reader hands on for that session are held aside, then appended after them,
at the moment the new session is registered. So none is lost or applied
twice (the queue skips an entry id it has applied), and their order is the
bus's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ...logs import log_event, session_hash
from .bus import BusReader, concerns, id_after
from .link import TRANSIENT, Link
from .store import Store

_PAGE = 500  # bus entries read per round trip


async def catch_up(
    link: Link,
    bus: BusReader,
    store: Store,
    session_id: str,
    entry: str,
    adopt: Callable[[], None],
    *,
    applied_by: str = "",
) -> int:
    """Append the pushes after bus entry ``entry``; ``adopt`` registers the session.

    ``applied_by``: the old home. Its own entries (broadcasts it made) are
    skipped: it applied them to its sessions when it made them, before it
    wrote them to the bus.
    """
    bus.holding[session_id] = []  # from here on, the reader holds this session's pushes
    upto = link.position  # everything up to here was handed on before
    applied = 0
    try:
        if upto is not None and id_after(upto, entry):
            applied = await _replay(link, store, session_id, entry, upto, applied_by)
    finally:
        held = bus.holding.pop(session_id, [])
        adopt()  # no await from here: the held pushes go first, then the reader's
        for entry_id, message in held:
            store.push(session_id, message, entry=entry_id)
    if applied or held:
        log_event(
            logging.INFO,
            "session_caught_up",
            session=session_hash(session_id),
            pushes=applied + len(held),
        )
    return applied + len(held)


async def _replay(
    link: Link, store: Store, session_id: str, entry: str, upto: str, applied_by: str
) -> int:
    client = link.require_client()
    seen: dict[str, int] = {}  # publisher -> last sequence number (a retried write is one)
    # After the entry named; a push of a group names <stream id>-<i>: that group is
    # read again (what it applied is skipped by the queue, lua/push.lua).
    stream_id, _, index = entry.rpartition("-") if entry.count("-") == 2 else (entry, "", "")
    start = stream_id if index else f"({entry}"
    applied = 0
    while True:
        try:
            rows: list[Any] = await client.xrange(link.bus, min=start, max=upto, count=_PAGE) or []
        except TRANSIENT as exc:
            link.went_offline(exc, "catch_up")
            log_event(logging.ERROR, "catch_up_failed", session=session_hash(session_id))
            return applied
        for entry_id, raw in rows:
            fields: dict[str, str] = raw or {}
            origin = fields.get("o")
            if applied_by and origin == applied_by:
                continue  # the old home's own: applied when it was made
            if fields.get("k") == "many" and origin is not None:  # a group: each of its pushes
                group = json.loads(fields.get("e", "[]"))
                items = [(f"{entry_id}-{i}", {**e, "o": origin}) for i, e in enumerate(group, 1)]
            else:
                items = [(str(entry_id), fields)]
            for name, item in items:
                if origin is not None:
                    seq = int(item.get("n", "0"))
                    if seq <= seen.get(origin, 0):
                        continue  # a retried write, seen already
                    seen[origin] = seq
                if concerns(item, session_id):
                    store.push(session_id, item.get("m", ""), entry=name)
                    applied += 1
        if len(rows) < _PAGE:
            return applied
        start = f"({rows[-1][0]}"
