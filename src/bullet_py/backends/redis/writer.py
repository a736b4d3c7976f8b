"""The one path of every write to Redis: ordered, bounded, retried, idempotent.

Writes (script calls and bus entries) wait in one FIFO, bounded in count and
bytes, and go to Redis in pipelined batches, in the order they were made.
While Redis is unreachable they wait; a batch whose outcome is unclear is sent
again from its first unconfirmed write, with backoff. Replaying is safe:
every writing script is idempotent, and bus readers skip an entry whose
(publisher, sequence number) they have seen.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
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


@dataclass(slots=True)
class _Write:
    """One buffered write: a script call, or (``call`` None) an entry appended to the bus."""

    call: Call | None
    fields: dict[str, str] | None = None
    size: int = 0
    done: Callable[[Any], None] | None = None


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
    ) -> bool:
        """Queue a script call; ``done`` gets its result. False when the buffer is full.

        ``essential``: a small write that settles a message a poll holds (its
        ack, its requeue, a take given up on) is queued even when the buffer is
        full, else the message would stay in flight for a live worker; there
        is at most one per poll, so the bound is exceeded by little.
        """
        return self._buffer(_Write(call, None, size, done), essential)

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
                continue
            if write.done is not None:
                try:
                    write.done(result)
                except Exception:
                    logger.exception("redis write callback failed")
        return True

    async def _execute(self, batch: list[_Write]) -> list[Any]:
        link = self._link
        client = link.require_client()
        scripts = link.scripts
        if not scripts.loaded:
            await scripts.load(client)
        bus, maxlen = link.bus, link.settings.bus_maxlen
        async with client.pipeline(transaction=False) as pipe:
            for write in batch:
                fields = write.fields
                if write.call is not None:
                    scripts.queue(pipe, write.call)
                elif fields is None:
                    raise AssertionError("a bus write without fields")
                elif write.size < BIG_ENTRY and fields.get("k") != "fwd":
                    # Small: bounded by the entry count alone, at the cost of one XADD.
                    pipe.xadd(bus, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
                else:
                    scripts.queue(pipe, self._append(fields))
            return list(await pipe.execute(raise_on_error=False))

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


def _report_trimmed(result: Any) -> None:
    """The bus went over ``bus_max_bytes`` and was trimmed: a lagging reader misses entries."""
    if not isinstance(result, list):
        return  # a small entry: XADD, bounded by the entry count
    _id, trimmed, trimmed_bytes, _expired = result
    if int(trimmed):
        log_event(logging.WARNING, "bus_trimmed", entries=int(trimmed), bytes=int(trimmed_bytes))
