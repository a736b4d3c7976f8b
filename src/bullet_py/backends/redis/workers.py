"""This worker's heartbeat, and putting back what dead workers' polls held.

Each worker refreshes its expiry in ``P:workers`` every ``heartbeat``; one
silent for ``worker_ttl`` is dead: its sessions are forgotten when next looked
up, and the messages its polls had taken (``P:f:<worker>``) go back to the
head of their queues. The heartbeat also tells Redis again, now and then and
after Redis restarted, which sessions this worker is home to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ...logs import log_event
from . import scripts
from .link import TRANSIENT, Link

logger = logging.getLogger("bullet_py")


class Heartbeat:
    """Beats, reaps the dead, and has the sessions homed here announced again."""

    def __init__(
        self,
        link: Link,
        announce_all: Callable[[], None],
        adopt_orphans: Callable[[], Awaitable[int]],
    ) -> None:
        self._link = link
        self._announce_all = announce_all
        self._adopt_orphans = adopt_orphans
        self._now = asyncio.Event()  # beat (and announce) without waiting for the period
        self._announce_due = False

    def redis_restarted(self) -> None:
        self._announce_due = True
        self._now.set()

    async def beat(self, ttl: float) -> None:
        """This worker lives ``ttl`` seconds more (a negative ``ttl``: it is dead now)."""
        link = self._link
        call = scripts.beat(
            workers=link.workers,
            bus=link.bus,
            wpos=link.read_position_key(link.worker_id),
            me=link.worker_id,
            ttl_ms=int(ttl * 1000),
            max_age_ms=int((link.settings.bus_max_age or 0) * 1000),
            pos=link.position or "",
            keep_ms=link.ttl_ms,
        )
        await link.run(call)

    async def reap(self, only: str = "") -> int:
        """Put back what the polls of dead workers (or of ``only``) held; forget them."""
        link = self._link
        settings = link.settings
        call = scripts.reap(
            workers=link.workers,
            bus=link.bus,
            prefix=settings.prefix,
            maxlen=settings.bus_maxlen,
            ttl_ms=settings.session_ttl_ms,
            only=only,
        )
        return int(await link.run(call))

    async def run_forever(self) -> None:
        link = self._link
        settings = link.settings
        loop = asyncio.get_running_loop()
        refresh_every = settings.session_ttl / 3
        next_refresh = loop.time() + refresh_every
        while not link.closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.heartbeat):
                    await self._now.wait()
            self._now.clear()
            try:
                await self.beat(settings.worker_ttl)
                if link.trust() == "1":
                    moved = await self.reap()
                    if moved:
                        log_event(logging.WARNING, "dead_worker_requeued", messages=moved)
                    orphans = await self._adopt_orphans()
                    if orphans:
                        log_event(logging.INFO, "orphaned_sessions_ended", sessions=orphans)
            except TRANSIENT as exc:
                link.went_offline(exc, "heartbeat")
                continue
            except Exception:  # a bug must not stop the heartbeat: log, beat again later
                logger.exception("heartbeat failed")
                continue
            link.came_online()
            if self._announce_due or loop.time() >= next_refresh:
                self._announce_due = False
                next_refresh = loop.time() + refresh_every
                self._announce_all()
