"""What packing one of the backend's script calls costs: redis-py's asyncio packer and hiredis's.

    python bench/redis_pack.py

Every push, take and acknowledgement of the Redis backend is an ``EVALSHA`` of
5 to 20 arguments. redis-py's asyncio connections pack commands in Python;
``bullet_py.backends.redis.packing`` has them packed by hiredis, as redis-py's
synchronous client does. Both pack the same call (a push's arguments, a
100-character message) in this process, many times, alternating; the figure is
µs per call (best of the rounds), and their ratio.
"""

from __future__ import annotations

import time

from redis.asyncio.connection import Connection

from bullet_py.backends.redis.packing import hiredis_packing

PUSH = (
    "EVALSHA", "f" * 40, 5, "chat:s:" + "a" * 32, "chat:q:" + "a" * 32, "chat:k:" + "a" * 32,
    "chat:bus", "chat:f", "m" * 100, 100, 123456, 1000, 1048576, "refused", 120000,
    "0123456789abcdef", 10000, "a" * 32, "chat", "1733200000000-0",
)  # fmt: skip


def per_call(conn: Connection, calls: int) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        conn.pack_command(*PUSH)
    return (time.perf_counter() - began) / calls * 1e6


def main() -> None:
    kwargs = {"decode_responses": True, "encoding_errors": "surrogatepass"}
    python, hiredis = Connection(**kwargs), hiredis_packing(Connection)(**kwargs)
    assert b"".join(python.pack_command(*PUSH)) == b"".join(hiredis.pack_command(*PUSH))
    rounds: dict[str, list[float]] = {"redis-py": [], "hiredis": []}
    for _ in range(5):
        rounds["redis-py"].append(per_call(python, 20_000))
        rounds["hiredis"].append(per_call(hiredis, 20_000))
    best = {name: min(values) for name, values in rounds.items()}
    print(f"a push's EVALSHA ({len(PUSH)} arguments), µs per call, best of 5 rounds:")
    for name, value in best.items():
        print(f"  {name:<9} {value:6.2f}")
    print(f"  hiredis / redis-py: {best['hiredis'] / best['redis-py']:.2f}x")


if __name__ == "__main__":
    main()
