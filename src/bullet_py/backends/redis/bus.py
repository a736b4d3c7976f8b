"""The bus: one Redis stream every worker appends to (through the writer) and reads.

A stream rather than pub/sub: a worker whose connection drops resumes where it
stopped instead of missing what was published meanwhile. Each entry carries
its publisher's id (``o``) and sequence number (``n``), so a retried write is
seen once, and one publisher's entries are read in the order it wrote them.
Field ``k`` says what an entry is: ``send``, ``broadcast``, ``info`` (pushes),
``fwd`` and ``rep`` (a POST forwarded to a session's home, its reply),
``wake`` (a queue with parked polls got a message), ``gone`` (a session ended),
``probe`` (a client asks another worker for a session a stream of its home
holds: the home checks that stream);
``many`` holds several of the others, from one publisher, in order (the writer
groups the small entries of one batch: see :mod:`.writer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis import exceptions as redis_errors

from ...logs import log_event
from ..base import Deliver, Envelope, Kind
from .link import TRANSIENT, Link

logger = logging.getLogger("bullet_py")

_READ_COUNT = 512  # bus entries read in one round trip
_ENVELOPE_KINDS = frozenset(k.value for k in Kind)


class Listener(Protocol):
    """What the other parts do with the entries meant for them."""

    def wake(self, session_id: str) -> None:
        """A message was queued (or put back) for a session with parked polls."""

    def release(self, session_id: str) -> None:
        """A session ended: answer its polls parked here."""

    def forwarded(
        self, origin: str, request_id: str, session_id: str, message: str, *, close: bool
    ) -> None:
        """A POST for a session of this worker, from worker ``origin`` (``close``: end it)."""

    def replied(self, fields: dict[str, str]) -> None:
        """The reply to a POST this worker forwarded."""

    def probe(self, session_id: str) -> None:
        """Another worker's client asks for a session a stream here holds: is it alive?"""

    def redis_restarted(self) -> None:
        """Redis lost what it held: say again what this worker holds."""


def envelope_fields(envelope: Envelope) -> dict[str, str]:
    """The entry for a push.

    Raises:
        TypeError: an ``info`` payload JSON cannot carry.
    """
    # ``_value_`` is what ``.value`` returns, without the descriptor's call.
    fields = {"k": envelope.kind._value_, "m": envelope.message}
    if envelope.session_id is not None:
        fields["s"] = envelope.session_id
    if envelope.group is not None:
        fields["g"] = envelope.group
    if envelope.exclude is not None:
        fields["x"] = envelope.exclude
    if envelope.kind is Kind.INFO:
        try:
            fields["i"] = json.dumps(envelope.info)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"info payloads cross processes as JSON: {exc}") from None
    return fields


class BusReader:
    """Reads the bus from this worker's position and hands each entry to its reader."""

    def __init__(
        self, link: Link, room: Callable[[int], Awaitable[None]], listener: Listener
    ) -> None:
        self._link = link
        self._room = room  # until the write buffer has room for so many writes
        self._listener = listener
        self.deliver: Deliver | None = None
        self._seen: dict[str, int] = {}  # publisher id -> last sequence number read
        # Sessions being taken over (see .takeover): their pushes wait here, in order.
        self.holding: dict[str, list[tuple[str, str]]] = {}
        self._run_id: str | None = None

    async def end(self) -> str:
        """The id of the last entry (reading starts after it)."""
        last = await self._link.require_client().xrevrange(self._link.bus, count=1)
        return str(last[0][0]) if last else "0-0"

    async def run_forever(self, position: str | None) -> None:
        link = self._link
        lane = link.require_read_lane()
        backoff = link.settings.backoff()
        block_ms = int(link.block * 1000)
        fresh = True  # check the server after every (re)connection
        if position is not None:
            link.position = position  # what parking names as applied (lua/park.lua)
        while not link.closing:
            try:
                if position is None:
                    position = link.position = await self.end()
                    fresh = False
                if fresh:
                    await self._check_server(position)
                    fresh = False
                read = ("XREAD", "COUNT", _READ_COUNT, "BLOCK", block_ms, "STREAMS")
                entries = stream_entries(await lane.call(*read, link.bus, position))
            except TRANSIENT as exc:
                link.went_offline(exc, "read")
                fresh = True
                await asyncio.sleep(backoff.next())
                continue
            except Exception:  # a bug must not stop the reader: log, retry later
                logger.exception("reading the bus failed")
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            link.came_online()
            for entry_id, fields in entries:
                # Back-pressure: an entry may make many writes (a broadcast to
                # many polling sessions here); while the buffer is over half
                # full, the entries wait in the stream rather than be refused.
                # Another worker's group is decoded first, to wait for room
                # for all its entries.
                group = self._decoded_group(fields)
                await self._room(1 if group is None else len(group))
                position = entry_id
                link.current_entry = entry_id
                try:
                    self.dispatch(fields, group)
                except Exception:
                    logger.exception("bus entry could not be handled")
                finally:
                    link.current_entry = ""
                    link.position = entry_id

    async def _check_server(self, position: str) -> None:
        """After a reconnection: did Redis restart, did the bus drop entries we had not read?

        Asked on the reader's lane, the connection its reads use: a connection
        of its own left idle through an outage would fail once more after it.
        """
        lane = self._link.require_read_lane()
        run_id = info_field(await lane.call("INFO", "server"), "run_id")
        if self._run_id is not None and run_id != self._run_id:
            log_event(logging.WARNING, "redis_restarted", note="unpersisted data is lost")
            self._link.scripts.loaded = False
            self._listener.redis_restarted()
        self._run_id = run_id
        with contextlib.suppress(redis_errors.ResponseError):  # no bus yet
            stream = pairs(await lane.call("XINFO", "STREAM", self._link.bus))
            trimmed = str(stream.get("max-deleted-entry-id", "0-0"))
            if id_after(trimmed, position):
                log_event(logging.ERROR, "bus_gap", read_from=position, trimmed_to=trimmed)

    def _decoded_group(self, fields: dict[str, str]) -> list[dict[str, str]] | None:
        """The entries of another worker's group entry (None for anything else)."""
        origin = fields.get("o")
        if fields.get("k") != "many" or origin is None or origin == self._link.worker_id:
            return None
        try:
            entries = json.loads(fields.get("e", "[]"))
        except ValueError:
            return None  # dispatch logs it
        return entries if isinstance(entries, list) else None

    def dispatch(self, fields: dict[str, str], group: list[dict[str, str]] | None = None) -> None:
        """Hand one bus entry on; ``group``: its entries, when the caller decoded them."""
        origin = fields.get("o")
        if origin is not None:
            if origin == self._link.worker_id:
                if self.holding:
                    self._hold_own(fields)  # pushes of ours, for a session being taken over
                return  # delivered here when it was made (a group is not even decoded)
            if fields.get("k") == "many":
                if group is None:
                    group = json.loads(fields.get("e", "[]"))
                self._dispatch_group(origin, group)
                return
            seq = int(fields.get("n", "0"))
            if seq <= self._seen.get(origin, 0):
                return  # a retried write, seen already
            self._seen[origin] = seq
        kind = fields.get("k")
        listener = self._listener
        if kind == "wake":
            listener.wake(fields.get("s", ""))
        elif kind == "gone":
            listener.release(fields.get("s", ""))
        elif kind == "fwd":
            if fields.get("t") == self._link.worker_id and origin is not None:
                listener.forwarded(
                    origin,
                    fields.get("r", ""),
                    fields.get("s", ""),
                    fields.get("m", ""),
                    close=fields.get("c") == "1",
                )
        elif kind == "rep":
            if fields.get("t") == self._link.worker_id:
                listener.replied(fields)
        elif kind == "probe":
            if fields.get("t") == self._link.worker_id:
                listener.probe(fields.get("s", ""))
        elif kind in _ENVELOPE_KINDS and self.deliver is not None:
            if self.holding and self._hold(kind, fields):
                return
            info = fields.get("i")
            self.deliver(
                Envelope(
                    Kind(kind),
                    fields.get("m", ""),
                    session_id=fields.get("s"),
                    group=fields.get("g"),
                    exclude=fields.get("x"),
                    info=json.loads(info) if info is not None else None,
                    origin=origin or "",
                )
            )

    def _dispatch_group(self, origin: str, entries: list[dict[str, str]]) -> None:
        """Each entry of a group, in order, as if it had been read on its own.

        A push of a group names its entry ``<stream id>-<position>`` (from 1),
        so the session's last applied push is known to the entry (lua/push.lua).
        """
        link = self._link
        base = link.current_entry
        for index, entry in enumerate(entries, 1):
            entry["o"] = origin
            if base:
                link.current_entry = f"{base}-{index}"
            try:
                self.dispatch(entry)
            except Exception:
                logger.exception("bus entry could not be handled")
        link.current_entry = base

    def _hold_own(self, fields: dict[str, str]) -> None:
        """This worker's own pushes are not read back, but one being taken over needs them."""
        kind = fields.get("k", "")
        if kind != "many":
            if kind in _ENVELOPE_KINDS:
                self._hold(kind, fields)
            return
        link = self._link
        base = link.current_entry
        for index, entry in enumerate(json.loads(fields.get("e", "[]")), 1):
            if entry.get("k") in _ENVELOPE_KINDS:
                link.current_entry = f"{base}-{index}" if base else ""
                self._hold(entry["k"], entry)
        link.current_entry = base

    def _hold(self, kind: str, fields: dict[str, str]) -> bool:
        """Keep a push for a session being taken over; True if it concerns only that one."""
        entry = self._link.current_entry
        if kind == Kind.SEND.value:
            held = self.holding.get(fields.get("s", ""))
            if held is None:
                return False
            held.append((entry, fields.get("m", "")))
            return True
        if kind == Kind.BROADCAST.value and "g" not in fields:
            for session_id, held in self.holding.items():
                if fields.get("x") != session_id:
                    held.append((entry, fields.get("m", "")))
        return False


def stream_entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """The entries of a raw ``XREAD`` reply of one stream, each ``(id, fields)``, in order.

    ``None`` when the read timed out; RESP2 answers ``[[stream, entries]]``,
    RESP3 ``{stream: entries}``; an entry is ``[id, [name, value, ...]]``.
    """
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else (entries for _, entries in reply)
    return [
        (entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))
        for entries in streams
        for entry_id, flat in entries
    ]


def info_field(reply: Any, name: str) -> str:
    """Field ``name`` of a raw ``INFO`` reply (``name:value`` lines), "" when absent."""
    prefix = name + ":"
    for line in str(reply).splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return ""


def pairs(reply: Any) -> dict[str, Any]:
    """A raw reply of names and values: a flat list (RESP2) or a map (RESP3)."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def concerns(fields: dict[str, str], session_id: str) -> bool:
    """A bus entry pushes to ``session_id`` (by id, or a broadcast to everyone)."""
    kind = fields.get("k")
    if kind == Kind.SEND.value:
        return fields.get("s") == session_id
    return kind == Kind.BROADCAST.value and "g" not in fields and fields.get("x") != session_id


def id_after(a: str, b: str) -> bool:
    """Whether bus entry id ``a`` comes after ``b`` (as lua/lib.lua's ``id_after``).

    ``<ms>-<seq>`` names a stream entry, all of it; ``<ms>-<seq>-<i>`` the i-th
    push of a grouped one.
    """

    def parts(entry_id: str) -> tuple[int, int, float]:
        ms, _, rest = entry_id.partition("-")
        seq, _, index = rest.partition("-")
        return int(ms or 0), int(seq or 0), float(index) if index else float("inf")

    return parts(a) > parts(b)
