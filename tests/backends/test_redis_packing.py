"""hiredis packs the backend's commands into exactly the bytes redis-py's asyncio client would."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from bullet_py.backends.redis.packing import hiredis_packing

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "f" * 40, 3, "p:s:abc", "p:q:abc", "p:k:abc", "message", 100, 12345),
    ("XADD", "p:bus", "MAXLEN", "~", 10000, "*", "k", "broadcast", "m", "é€😀"),
    ("SET", "lone", "a\ud800b"),  # surrogatepass: the lone surrogate round-trips
    ("SET", b"raw\x00bytes", bytearray(b"array"), memoryview(b"view")),
    ("SET", "numbers", -7, 2**70, 0, 1.5, -0.25, 1e300),
    ("CLIENT SETNAME", "p:worker"),  # a command name with a space: two arguments
    (b"CONFIG GET", b"maxmemory"),
    ("SET", "big", "x" * 20_000),  # past redis-py's buffer cutoff: it chunks, hiredis not
    ("PING",),
]


def _pair(base: type[Connection]) -> tuple[Connection, Connection]:
    kwargs: dict[str, Any] = {"decode_responses": True, "encoding_errors": "surrogatepass"}
    if base is UnixDomainSocketConnection:
        kwargs["path"] = "/nonexistent"
    packed_class = hiredis_packing(base)
    return base(**kwargs), packed_class(**kwargs)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_the_bytes_are_redis_pys_own(command: tuple[Any, ...]) -> None:
    plain, packed = _pair(Connection)
    assert type(packed) is not Connection
    assert b"".join(packed.pack_command(*command)) == b"".join(plain.pack_command(*command))


def test_pipelined_commands_too() -> None:
    plain, packed = _pair(Connection)
    assert b"".join(packed.pack_commands(COMMANDS)) == b"".join(plain.pack_commands(COMMANDS))


@pytest.mark.parametrize("bad", [True, None, object(), ["list"]])
def test_what_redis_py_refuses_is_refused(bad: Any) -> None:
    plain, packed = _pair(Connection)
    with pytest.raises(DataError):
        plain.pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        packed.pack_command("SET", "k", bad)


def test_a_strict_connection_refuses_a_lone_surrogate_as_redis_py_does() -> None:
    plain, packed = Connection(), hiredis_packing(Connection)()
    with pytest.raises(UnicodeEncodeError):
        plain.pack_command("SET", "k", "\ud800")
    with pytest.raises(UnicodeEncodeError):
        packed.pack_command("SET", "k", "\ud800")


@pytest.mark.parametrize("base", [Connection, SSLConnection, UnixDomainSocketConnection])
def test_the_url_s_own_connection_class_is_kept(base: type[Connection]) -> None:
    packed_class = hiredis_packing(base)
    assert issubclass(packed_class, base) and packed_class is not base
    assert hiredis_packing(base) is packed_class  # made once per class


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("redis://127.0.0.1:1/0", Connection),
        ("rediss://127.0.0.1:1/0", SSLConnection),
        ("unix:///tmp/nonexistent.sock", UnixDomainSocketConnection),
    ],
)
async def test_the_backend_s_clients_pack_with_hiredis(url: str, base: type[Connection]) -> None:
    """Both clients (writes and the bus reader), whatever the URL's scheme; no connection made."""
    from bullet_py.backends.redis import RedisBackend

    link = RedisBackend(url, prefix="packing")._link
    link.open()
    clients = [c for c in (link.client, link.reader) if c is not None]
    try:
        assert len(clients) == 2
        for client in clients:
            pool = client.connection_pool
            assert pool.connection_class is hiredis_packing(base)
            assert pool.connection_class is not base
    finally:
        for client in clients:
            await client.aclose()
