"""The Lua scripts (``lua/*.lua``) and one wrapper per script with named arguments.

Each script file names its ``KEYS`` and ``ARGV`` in a header (``-- KEYS: s q``,
``-- ARGV: me ttl_ms``); the wrapper of the same name takes exactly those, by
keyword, and returns a :class:`Call`, so no call site depends on positions.
A call is either run now (:meth:`Scripts.run`) or handed to the write buffer,
which pipelines it (:meth:`Scripts.queue`).

Scripts are registered with redis-py's own helper (``register_script``: an
``AsyncScript`` computes the SHA and runs EVALSHA, loading the script again
when Redis answers NOSCRIPT). The write buffer does not go through
``AsyncScript.__call__``: in a pipeline that adds a ``SCRIPT EXISTS`` round
trip before every batch. It sends EVALSHA with the registered SHA itself
(:meth:`Scripts.command`), after one :meth:`Scripts.load` per Redis server
(again once Redis answers NOSCRIPT).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

#: Every script, by file name (``lua/<name>.lua``); ``lib.lua`` is prepended to each.
NAMES = (
    "issue",
    "locate",
    "announce",
    "push",
    "take",
    "unpark",
    "requeue",
    "ack",
    "forget",
    "beat",
    "reap",
    "idle",
    "cancel",
    "append",
    "park",
    "rewind",
    "record",
    "orphans",
)

Arg = str | int


class Call(NamedTuple):
    """One script invocation: which script, its keys and its arguments, in order.

    A named tuple rather than a frozen dataclass: one is made per push, and a
    tuple is the cheapest immutable record to build.
    """

    script: str
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


@functools.cache
def text(name: str) -> str:
    """The file ``lua/<name>.lua`` (package data)."""
    return files(__package__ or __name__).joinpath("lua", f"{name}.lua").read_text("utf-8")


def source(name: str) -> str:
    """What Redis runs for script ``name``: the shared library, then the script."""
    return text("lib") + "\n" + text(name)


class Scripts:
    """The scripts registered on one client."""

    __slots__ = ("_by_name", "loaded")

    def __init__(self, client: aioredis.Redis) -> None:
        self._by_name: dict[str, AsyncScript] = {
            name: client.register_script(source(name)) for name in NAMES
        }
        self.loaded = False  # known to the Redis server the writer talks to

    async def run(self, call: Call) -> Any:
        """Run ``call`` now (not through the write buffer)."""
        return await self._by_name[call.script](keys=call.keys, args=call.args)

    async def load(self, client: aioredis.Redis) -> None:
        """Load every script (one round trip), before the writer pipelines EVALSHAs."""
        async with client.pipeline(transaction=False) as pipe:
            for script in self._by_name.values():
                pipe.script_load(script.script)
            await pipe.execute()
        self.loaded = True

    def command(self, call: Call) -> tuple[Arg, ...]:
        """``call`` as the EVALSHA command the writer sends (after :meth:`load`)."""
        return ("EVALSHA", self._by_name[call.script].sha, len(call.keys), *call.keys, *call.args)


# --- one wrapper per script ---------------------------------------------------------------


def issue(*, pending: str, sid: str, ttl_ms: int, limit: int) -> Call:
    return Call("issue", (pending,), (sid, ttl_ms, limit))


def locate(
    *,
    pending: str,
    s: str,
    q: str,
    k: str,
    workers: str,
    sid: str,
    me: str,
    ttl_ms: int,
    trust: str,
    claim_ms: int,
    r: str,
) -> Call:
    return Call("locate", (pending, s, q, k, workers, r), (sid, me, ttl_ms, trust, claim_ms))


def announce(*, s: str, q: str, me: str, queued: str, ttl_ms: int) -> Call:
    return Call("announce", (s, q), (me, queued, ttl_ms))


def push(
    *,
    s: str,
    q: str,
    k: str,
    bus: str,
    message: str,
    chars: int,
    seq: int,
    max_messages: int,
    max_chars: int,
    when_full: str,
    ttl_ms: int,
    me: str,
    maxlen: int,
    sid: str,
    f: str,
    prefix: str,
    bid: str,
) -> Call:
    return Call(
        "push",
        (s, q, k, bus, f),
        (
            message,
            chars,
            seq,
            max_messages,
            max_chars,
            when_full,
            ttl_ms,
            me,
            maxlen,
            sid,
            prefix,
            bid,
        ),
    )


def take(
    *,
    s: str,
    q: str,
    k: str,
    f: str,
    workers: str,
    x: str,
    sid: str,
    token: str,
    me: str,
    park_ms: int,
    ttl_ms: int,
    trust: str,
    prefix: str,
    homed_here: str,
    r: str,
    ack: str,
    max_n: int,
    max_c: int,
) -> Call:
    return Call(
        "take",
        (s, q, k, f, workers, x, r),
        (sid, token, me, park_ms, ttl_ms, trust, prefix, homed_here, ack, max_n, max_c),
    )


def unpark(*, k: str, s: str, token: str) -> Call:
    return Call("unpark", (k, s), (token,))


def requeue(*, f: str, bus: str, token: str, prefix: str, maxlen: int, ttl_ms: int) -> Call:
    return Call("requeue", (f, bus), (token, prefix, maxlen, ttl_ms))


def ack(*, f: str, bus: str, token: str, prefix: str, maxlen: int, max_n: int, max_c: int) -> Call:
    return Call("ack", (f, bus), (token, prefix, maxlen, max_n, max_c))


def forget(*, s: str, q: str, k: str, bus: str, r: str, sid: str, maxlen: int, me: str) -> Call:
    return Call("forget", (s, q, k, bus, r), (sid, maxlen, me))


def beat(
    *,
    workers: str,
    bus: str,
    wpos: str,
    me: str,
    ttl_ms: int,
    max_age_ms: int,
    pos: str,
    keep_ms: int,
) -> Call:
    return Call("beat", (workers, bus, wpos), (me, ttl_ms, max_age_ms, pos, keep_ms))


def reap(*, workers: str, bus: str, prefix: str, maxlen: int, ttl_ms: int, only: str) -> Call:
    return Call("reap", (workers, bus), (prefix, maxlen, ttl_ms, only))


def idle(*, s: Sequence[str], k: Sequence[str]) -> Call:
    """``s`` and ``k``: the hash and parked-polls keys of the same sessions, in one order."""
    if len(s) != len(k):
        raise ValueError("one parked-polls key per session hash")
    return Call("idle", (*s, *k), (len(s),))


def cancel(
    *, f: str, k: str, x: str, bus: str, token: str, prefix: str, maxlen: int, ttl_ms: int
) -> Call:
    return Call("cancel", (f, k, x, bus), (token, prefix, maxlen, ttl_ms))


def append(
    *,
    bus: str,
    big: str,
    total: str,
    maxlen: int,
    max_age_ms: int,
    max_bytes: int,
    fwd_ms: int,
    kind: str,
    fields: Mapping[str, str],
) -> Call:
    """``fields``: the entry, in order (its names and values follow the fixed arguments)."""
    flat = [part for pair in fields.items() for part in pair]
    return Call(
        "append",
        (bus, big, total),
        (maxlen, max_age_ms, max_bytes, fwd_ms, kind, *flat),
    )


def park(
    *,
    s: str,
    q: str,
    k: str,
    bus: str,
    r: str,
    pw: str,
    parkers: str,
    me: str,
    ttl_ms: int,
    sent: int,
    bid: str,
    maxlen: int,
    sid: str,
    queue: Sequence[str] | None,
    replay: Sequence[str],
) -> Call:
    """``queue`` None: the session's queue is in Redis already (only mark it parked).

    The messages follow the fixed arguments (``nq`` and ``nr`` say how many).
    """
    nq = -1 if queue is None else len(queue)
    items = () if queue is None else (*queue, *replay)
    nr = 0 if queue is None else len(replay)
    return Call(
        "park", (s, q, k, bus, r, pw, parkers), (me, ttl_ms, sent, bid, maxlen, sid, nq, nr, *items)
    )


def rewind(
    *,
    s: str,
    q: str,
    r: str,
    k: str,
    bus: str,
    seen: int,
    sid: str,
    maxlen: int,
    max_n: int,
    max_c: int,
) -> Call:
    return Call("rewind", (s, q, r, k, bus), (seen, sid, maxlen, max_n, max_c))


def record(*, s: str, r: str, message: str, me: str, seq: int, max_n: int, max_c: int) -> Call:
    return Call("record", (s, r), (message, me, seq, max_n, max_c))


def orphans(
    *,
    workers: str,
    parkers: str,
    prefix: str,
    me: str,
    ttl_ms: int,
    trust: str,
    claim_ms: int,
    idle_ms: int,
    limit: int,
) -> Call:
    return Call(
        "orphans", (workers, parkers), (prefix, me, ttl_ms, trust, claim_ms, idle_ms, limit)
    )
