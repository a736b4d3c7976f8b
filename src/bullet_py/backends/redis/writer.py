"""The one path of every write to Redis: ordered, bounded, retried, idempotent.

Writes (script calls and bus entries) wait in one FIFO, bounded in count and
bytes, and go to Redis in pipelined batches, in the order they were made.
While Redis is unreachable they wait; a batch whose outcome is unclear is sent
again from its first unconfirmed write, with backoff. Replaying is safe:
every writing script is idempotent, and bus readers skip an entry whose
(publisher, sequence number) they have seen.

Consecutive small bus entries of one batch travel as one stream entry
(``k`` ``many``, the entries in order in field ``e``, see :func:`group_fields`):
one ``XADD`` for Redis to run and one entry for every reader to parse, instead
of one per push (the profile of a stream of pushes had the writer's ``XADD``
and the reader's parsing of its own entries cost more than delivering them).
Each entry keeps its sequence number, so a group replayed after an unclear
failure is still seen once, in order.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors

from ...logs import log_event
from . import scripts as lua
from .link import BIG_ENTRY, TRANSIENT, Link, busy
from .scripts import Call

logger = logging.getLogger("bullet_py")

_BATCH = 512  # writes sent in one round trip
GROUP_MAX = 65_536  # characters of one group entry (its entries' names and values)


@dataclass(slots=True)
class _Write:
    """One buffered write: a script call, or (``call`` None) an entry appended to the bus."""

    call: Call | None
    fields: dict[str, str] | None = None
    size: int = 0
    done: Callable[[Any], None] | None = None
    settle: bool = False  # ``done`` also gets an error Redis answered (not an outage)


class Writer:
    """The buffer of writes waiting for Redis, and the task flushing it."""

    def __init__(self, link: Link) -> None:
        self._link = link
        settings = link.settings
        self.max_writes = settings.buffer_max_writes
        self.max_bytes = settings.buffer_max_bytes
        self._writes: collections.deque[_Write] = collections.deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.drained = asyncio.Event()  # nothing waits
        self.drained.set()
        self.room = asyncio.Event()  # the buffer is under half full: reading may go on
        self.room.set()
        link.buffered = self.__len__

    def __len__(self) -> int:
        return len(self._writes)

    def call(
        self,
        call: Call,
        *,
        size: int,
        done: Callable[[Any], None] | None = None,
        essential: bool = False,
        settle: bool = False,
    ) -> bool:
        """Queue a script call; ``done`` gets its result. False when the buffer is full.

        ``settle``: ``done`` also gets the error of a call Redis refused (a bug,
        logged), for a caller that waits for the call either way.

        ``essential``: a small write that settles a message a poll holds (its
        ack, its requeue, a take given up on) is queued even when the buffer is
        full, else the message would stay in flight for a live worker; there
        is at most one per poll, so the bound is exceeded by little.
        """
        return self._buffer(_Write(call, None, size, done, settle), essential)

    def publish(self, fields: dict[str, str]) -> bool:
        """Queue an entry for the bus, stamped with this process's id and next sequence number."""
        link = self._link
        fields["o"] = link.worker_id
        fields["n"] = str(next(link.seq))
        size = sum(len(k) + len(v) for k, v in fields.items())
        return self._buffer(_Write(None, fields, size, _report_trimmed))

    def _buffer(self, write: _Write, essential: bool = False) -> bool:
        """Queue a write in order; False when the buffer is full (the caller reports it)."""
        if self._link.closing or self._link.client is None:
            return False
        full = len(self._writes) >= self.max_writes or self._bytes + write.size > self.max_bytes
        if full and not essential:
            log_event(
                logging.ERROR,
                "backend_buffer_full",
                buffered=len(self._writes),
                bytes=self._bytes,
            )
            return False
        self._writes.append(write)
        self._bytes += write.size
        self._ready.set()
        self.drained.clear()
        if not self._under_half():
            self.room.clear()
        return True

    def _under_half(self) -> bool:
        return len(self._writes) <= self.max_writes // 2 and self._bytes <= self.max_bytes // 2

    async def run_forever(self) -> None:
        """Flush in order, forever (cancelled by close(), once flushed or out of time)."""
        link = self._link
        backoff = link.settings.backoff()
        while True:
            while not self._writes:
                self.drained.set()
                self._ready.clear()
                await self._ready.wait()
            batch = list(itertools.islice(self._writes, _BATCH))
            try:
                results = await self._execute(batch)
            except TRANSIENT as exc:
                link.went_offline(exc, "write")
                await asyncio.sleep(backoff.next())
                continue
            except Exception:  # a bug must not stop the writer: log, retry later
                logger.exception("redis writes failed")
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            link.came_online()
            if not self._settle(batch, results):
                await asyncio.sleep(backoff.next())

    def _settle(self, batch: list[_Write], results: list[Any]) -> bool:
        """Drop the writes Redis applied; False if the rest of the batch must be sent again."""
        link = self._link
        for write, result in zip(batch, results, strict=True):
            if isinstance(result, redis_errors.NoScriptError):
                link.scripts.loaded = False  # Redis restarted: load again, replay from here
                return False
            if isinstance(result, TRANSIENT) or busy(result):
                link.went_offline(result, "write")
                return False
            self._writes.popleft()
            self._bytes -= write.size
            if not self.room.is_set() and self._under_half():
                self.room.set()
            if isinstance(result, Exception):
                name = write.call.script if write.call is not None else "xadd"
                logger.error("redis write %s failed: %r", name, result)
                if not write.settle:
                    continue
            if write.done is not None:
                try:
                    write.done(result)
                except Exception:
                    logger.exception("redis write callback failed")
        return True

    async def _execute(self, batch: list[_Write]) -> list[Any]:
        """Send ``batch`` in one pipeline; one result per write, in order."""
        link = self._link
        client = link.require_client()
        scripts = link.scripts
        if not scripts.loaded:
            await scripts.load(client)
        bus, maxlen = link.bus, link.settings.bus_maxlen
        runs = plan(batch)
        async with client.pipeline(transaction=False) as pipe:
            for start, end in runs:
                write = batch[start]
                fields = write.fields
                if end - start > 1:
                    fields = group_fields(link.worker_id, batch[start:end])
                    size = sum(len(k) + len(v) for k, v in fields.items())
                else:
                    size = write.size
                if write.call is not None:
                    scripts.queue(pipe, write.call)
                elif fields is None:
                    raise AssertionError("a bus write without fields")
                elif size < BIG_ENTRY and fields.get("k") != "fwd":
                    # Small: bounded by the entry count alone, at the cost of one XADD.
                    pipe.xadd(bus, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
                else:
                    scripts.queue(pipe, self._append(fields))
            replies = list(await pipe.execute(raise_on_error=False))
        return spread(runs, replies)

    def _append(self, fields: dict[str, str]) -> Call:
        """A large bus entry or a forwarded POST, appended within the bus's bounds."""
        link = self._link
        settings = link.settings
        return lua.append(
            bus=link.bus,
            big=link.bus_big,
            total=link.bus_bytes,
            maxlen=settings.bus_maxlen,
            max_age_ms=int((settings.bus_max_age or 0) * 1000),
            max_bytes=settings.bus_max_bytes,
            fwd_ms=int(settings.forward_timeout * 1000),
            kind=fields.get("k", ""),
            fields=fields,
        )


def _groupable(write: _Write) -> bool:
    """A small bus entry that may share a stream entry with its neighbours."""
    fields = write.fields
    return (
        write.call is None
        and fields is not None
        and write.size < BIG_ENTRY
        and fields.get("k") != "fwd"  # forwarded POSTs are appended one by one (append.lua)
    )


def plan(batch: list[_Write]) -> list[tuple[int, int]]:
    """The commands of a batch, as ``[start, end)`` ranges of writes, in order.

    A range of more than one write is a run of consecutive small bus entries
    (at most ``GROUP_MAX`` characters together) sent as one group entry;
    every other write is a range of its own. Script calls are never grouped,
    so the order of writes is the order of commands.
    """
    runs: list[tuple[int, int]] = []
    i, n = 0, len(batch)
    while i < n:
        j = i + 1
        if _groupable(batch[i]):
            size = batch[i].size
            while j < n and _groupable(batch[j]) and size + batch[j].size <= GROUP_MAX:
                size += batch[j].size
                j += 1
        runs.append((i, j))
        i = j
    return runs


def group_fields(origin: str, writes: list[_Write]) -> dict[str, str]:
    """One stream entry holding the bus entries of ``writes`` (each with its own ``n``).

    Field ``o`` is the publisher (readers skip their own group unread), ``n``
    the last sequence number in it, ``e`` the entries without their ``o``, as
    a JSON array of objects (``ensure_ascii`` off: text travels as in a
    single entry, a lone surrogate included).
    """
    entries = []
    for write in writes:
        assert write.fields is not None
        entries.append({k: v for k, v in write.fields.items() if k != "o"})
    return {
        "k": "many",
        "o": origin,
        "n": entries[-1]["n"],
        "e": json.dumps(entries, ensure_ascii=False, separators=(",", ":")),
    }


def spread(runs: list[tuple[int, int]], replies: list[Any]) -> list[Any]:
    """One result per write: a group's reply to its first write, its entry id to the rest.

    An error is every write's result, so each is handled (retried or logged)
    as its own would be; a trimming report (``append.lua``) is logged once.
    """
    results: list[Any] = []
    for (start, end), reply in zip(runs, replies, strict=True):
        results.append(reply)
        if end - start > 1:
            rest = reply if isinstance(reply, BaseException) else _entry_id(reply)
            results.extend([rest] * (end - start - 1))
    return results


def _entry_id(reply: Any) -> Any:
    return reply[0] if isinstance(reply, list) and reply else reply


def _report_trimmed(result: Any) -> None:
    """The bus went over ``bus_max_bytes`` and was trimmed: a lagging reader misses entries."""
    if not isinstance(result, list):
        return  # a small entry: XADD, bounded by the entry count
    _id, trimmed, trimmed_bytes, _expired = result
    if int(trimmed):
        log_event(logging.WARNING, "bus_trimmed", entries=int(trimmed), bytes=int(trimmed_bytes))
