"""Search for the legal Stream message that costs the most CPU (docs/robustness.md item 80).

Every shape below is grown (doubling, then halving the step) to the largest
size the decoder still accepts under its limits (``DecodeLimits``, the
endpoint's ``max_message_size``); the message is then sent through a whole
``Router`` session (decode, route, call a model, encode the reply) in each
place a client controls: the ``Props`` of a ``sync`` read, the ``Ref`` of a
``sync`` call, and the ``Msg`` of an action that ignores it. The CPU time per
message (best of ``--repeats``) is printed per shape, the worst last.

    python bench/worst_case.py [--repeats 5] [--budget-ms 20]

No assertions: the figure goes in docs/robustness.md. A test may check the
limits reject the shapes above a bound (tests/robustness/test_i_abuse.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import time
from collections.abc import Callable
from typing import Any

from bullet_py import Connection, Options, Transport
from bullet_py.codec.bert import decode, encode
from bullet_py.codec.bert_format import DEFAULT_LIMITS
from bullet_py.codec.terms import Atom
from bullet_py.exceptions import DecodeError, EncodeError
from bullet_py.hub import Hub
from bullet_py.registry import Registry
from bullet_py.router import Context, Router

A = Atom
LIMIT_UNITS = Options().max_message_size


def _bignum(i: int) -> int:
    return (1 << (8 * DEFAULT_LIMITS.max_bignum_bytes - 1)) + i


#: name -> how to build a payload of ``n`` pieces.
SHAPES: dict[str, Callable[[int], Any]] = {
    "small binaries": lambda n: [b"x"] * n,
    "distinct small binaries": lambda n: [str(i).encode() for i in range(n)],
    "atoms": lambda n: [A("a")] * n,
    "distinct atoms": lambda n: [A(f"a{i}") for i in range(n)],
    "small integers": lambda n: [1] * n,
    "empty lists": lambda n: [[]] * n,
    "empty tuples": lambda n: [()] * n,
    "pairs": lambda n: [(A("k"), 1)] * n,
    "floats": lambda n: [0.5] * n,
    "big integers": lambda n: [_bignum(i) for i in range(n)],
    "strings": lambda n: ["ab" * 64] * n,
    "long strings": lambda n: ["x" * 0x8000] * n,
    "deep nesting": lambda n: _nest(n),
    "wide text": lambda n: ["\u0141" * 1000] * n,
}


def _nest(n: int) -> Any:
    term: Any = []
    for _ in range(min(n, DEFAULT_LIMITS.max_depth - 4)):
        term = [term]
    return term


def wrap(place: str, payload: Any) -> Any:
    if place == "props":
        return (A("sync"), (A("read"), A("character"), [(A("p"), payload)]))
    if place == "ref":
        return (A("sync"), (A("read"), A("character"), [], payload))
    return (A("ignore"), payload)


def accepted(place: str, build: Callable[[int], Any], n: int) -> str | None:
    """The message if the decoder and the size limit accept it, else None."""
    try:
        text = encode(wrap(place, build(n)), big_ints=True)
    except EncodeError:
        return None  # deeper than the encoder goes: the decoder refuses it too
    if len(text) > LIMIT_UNITS:
        return None
    try:
        decode(text)
    except DecodeError:
        return None
    return text


def largest(place: str, build: Callable[[int], Any]) -> tuple[int, str]:
    """The biggest ``n`` whose message is still accepted (grow, then bisect)."""
    n = 1
    best = accepted(place, build, n)
    assert best is not None
    while (text := accepted(place, build, n * 2)) is not None and text != best:
        n, best = n * 2, text
    low, high = n, n * 2
    while high - low > max(1, low // 64):
        mid = (low + high) // 2
        text = accepted(place, build, mid)
        if text is None:
            high = mid
        else:
            low, best = mid, text
    return low, best


def character_router() -> Router:
    router = Router(timeout=30.0)

    class Character:
        def read(self, ctx: Context, props: dict[str, Any]) -> Any:
            return [(A("id"), 1), (A("name"), "Lukasz")]

    router.model("character", Character())

    @router.action("ignore")
    def ignore(ctx: Context, msg: Any) -> None:
        return None

    return router


async def session() -> Connection:
    options = Options()
    registry = Registry(options)
    conn = Connection(
        session_id="bench",
        transport=Transport.WEBSOCKET,
        handler=character_router()(),
        registry=registry,
        options=options,
        hub=Hub(registry),
    )
    registry.add(conn)
    await conn.open()
    return conn


async def cost_ms(conn: Connection, text: str, repeats: int) -> tuple[float, str]:
    best = float("inf")
    reply: str | None = None
    for _ in range(repeats):
        began = time.process_time()
        reply = await conn.handle_message(text)
        best = min(best, time.process_time() - began)
    outcome = "no reply" if reply is None else _summary(reply)
    return best * 1000, outcome


def _summary(reply: str) -> str:
    term = decode(reply)
    if isinstance(term, tuple) and term and term[0] == A("error"):
        return f"error {term[1]} {str(term[2])[:24]}"
    return f"reply {len(reply)} units"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget-ms", type=float, default=20.0)
    args = parser.parse_args()
    logging.getLogger("bullet_py").setLevel(logging.ERROR)  # refusals log one line each
    conn = await session()
    print(
        f"Python {platform.python_version()}, limits {DEFAULT_LIMITS}, "
        f"max_message_size {LIMIT_UNITS}"
    )
    print(f"{'place':6} {'shape':24} {'pieces':>8} {'units':>8} {'CPU ms':>8}  outcome")
    rows: list[tuple[float, str, str, int, int, str]] = []
    for place in ("props", "ref", "action"):
        for name, build in SHAPES.items():
            n, text = largest(place, build)
            ms, outcome = await cost_ms(conn, text, args.repeats)
            rows.append((ms, place, name, n, len(text), outcome))
            print(f"{place:6} {name:24} {n:8} {len(text):8} {ms:8.2f}  {outcome}")
    worst = max(rows)
    verdict = "within" if worst[0] <= args.budget_ms else "OVER"
    print(
        f"worst: {worst[1]} / {worst[2]} ({worst[3]} pieces, {worst[4]} units): "
        f"{worst[0]:.2f} ms CPU, {verdict} the {args.budget_ms:g} ms budget"
    )


if __name__ == "__main__":
    asyncio.run(main())
