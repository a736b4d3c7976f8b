"""Parts of the Redis backend that need no server: script wrappers, backoff."""

from __future__ import annotations

import inspect
import random
from importlib.resources import files

import pytest

from bullet_py.backends.redis import scripts
from bullet_py.backends.redis.link import Backoff


def declared(name: str) -> tuple[list[str], list[str]]:
    """The ``-- KEYS:`` and ``-- ARGV:`` names in the header of ``lua/<name>.lua``."""
    heads = {}
    for line in scripts.text(name).splitlines():
        for part in ("KEYS", "ARGV"):
            if line.startswith(f"-- {part}:"):
                heads[part] = line.split(":", 1)[1].split()
    return heads["KEYS"], heads["ARGV"]


def test_every_lua_file_is_a_known_script() -> None:
    folder = files("bullet_py.backends.redis").joinpath("lua")
    found = {entry.name.removesuffix(".lua") for entry in folder.iterdir()}
    assert found == {*scripts.NAMES, "lib"}


@pytest.mark.parametrize("name", [n for n in scripts.NAMES if n not in ("idle", "append", "park")])
def test_a_wrapper_passes_keys_and_args_in_the_order_its_script_declares(name: str) -> None:
    wrapper = getattr(scripts, name)
    params = inspect.signature(wrapper).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    call = wrapper(**{p: p for p in params})  # each argument's value is its own name
    keys, args = declared(name)
    assert call.script == name
    assert call.keys == tuple(keys)
    assert call.args == tuple(args)


def test_the_idle_wrapper_passes_hashes_then_parked_sets() -> None:
    assert declared("idle") == (["s...", "k..."], ["n"])
    call = scripts.idle(s=["s1", "s2"], k=["k1", "k2"])
    assert (call.keys, call.args) == (("s1", "s2", "k1", "k2"), (2,))
    with pytest.raises(ValueError):
        scripts.idle(s=["s1"], k=[])


def test_the_append_wrapper_passes_the_entry_after_its_fixed_arguments() -> None:
    keys, args = declared("append")
    assert args[-1] == "field..."
    fixed = {name: name for name in args[:-1]}
    call = scripts.append(
        bus="bus", big="big", total="total", fields={"k": "fwd", "m": "x"}, **fixed
    )
    assert call.keys == tuple(keys) == ("bus", "big", "total")
    assert call.args == (*args[:-1], "k", "fwd", "m", "x")


def test_the_park_wrapper_passes_the_queue_then_the_replay_after_its_fixed_arguments() -> None:
    keys, args = declared("park")
    assert args[-3:] == ["nq", "nr", "message..."]
    fixed = {name: name for name in args[:-3]}
    key_args = {name: name for name in keys}
    call = scripts.park(queue=["a", "b"], replay=["r"], **key_args, **fixed)  # type: ignore[arg-type]
    assert call.keys == tuple(keys) == ("s", "q", "k", "bus", "r", "pw", "parkers")
    assert call.args == (*args[:-3], 2, 1, "a", "b", "r")
    only_mark = scripts.park(queue=None, replay=["r"], **key_args, **fixed)  # type: ignore[arg-type]
    assert only_mark.args == (*args[:-3], -1, 0)  # a queue already in Redis: none sent


def test_each_script_starts_with_the_shared_library() -> None:
    assert all(scripts.source(n).startswith(scripts.text("lib")) for n in scripts.NAMES)


def test_backoff_doubles_with_half_jitter_up_to_its_cap() -> None:
    random.seed(7)
    backoff = Backoff(0.05, 2.0)
    for failures in range(12):
        ceiling = min(2.0, 0.05 * 2**failures)
        assert ceiling / 2 <= backoff.next() <= ceiling
    backoff.reset()
    assert 0.025 <= backoff.next() <= 0.05
    delays = [backoff.next() for _ in range(5000)]  # a long outage: no overflow
    assert all(1.0 <= delay <= 2.0 for delay in delays[10:])  # at the cap
