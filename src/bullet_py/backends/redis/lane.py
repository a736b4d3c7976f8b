"""A connection of one task's own: the write buffer's batches, the bus reader's reads.

redis-py wraps every pipeline in layers that a busy writer pays for on every
round trip: a pipeline object, the pool's lock to take a connection and give
it back, a retry wrapper, a response callback per command, and its
observability hooks. On the 2-core test machine a pipeline of one ``XADD``
cost about 210 µs of CPU through them, the same command sent and read on a
connection directly about 90 µs; with a stream of broadcasts the writer makes
a round trip for every 50 to 100 of them, and the bus reader one read for
each of those (its own entries come back). Each of the two sends one thing
at a time, so each keeps one connection of its own, made by its client's
pool (the URL's TLS, password, database, timeouts, client name and hiredis
packing), outside the pool's count, and uses only that connection's own
methods: pack the commands, send them, read one reply per command.

What a pipeline with ``raise_on_error=False`` gives is kept: an error Redis
answered (``NOSCRIPT``, ``BUSY``, a script's error) takes its command's place
among the results. A connection that failed or timed out during a batch is
dropped, since which replies it still owes is unknown; the next batch
connects again, after the writer's backoff.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection

#: One command as Redis takes it: its name, then its arguments.
Command = tuple[Any, ...]


class Lane:
    """One connection used by one task (the writer or the bus reader), one round trip at a time."""

    __slots__ = ("_client", "_connection")

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._connection: AbstractConnection | None = None

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write; their replies, in order (an error reply in place).

        Raises:
            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError:
                Redis could not be reached or did not answer in time (the
                connection is dropped).
        """
        connection = self._connection
        if connection is None:
            connection = self._connection = self._client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            # Connects first when needed (AUTH, SELECT, CLIENT SETNAME as configured).
            await connection.send_packed_command(
                connection.pack_commands(commands), check_health=False
            )
            results: list[Any] = []
            for _ in commands:
                try:
                    results.append(await connection.read_response())
                except redis_errors.ResponseError as exc:  # an answer: the stream goes on
                    results.append(exc)
            return results
        except BaseException:
            self._connection = None
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
            raise

    async def call(self, *command: Any) -> Any:
        """One command's reply; an error Redis answered is raised."""
        (reply,) = await self.execute([command])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # closing what may be broken already
                await connection.disconnect()
