"""Micro-benchmark: one Stream `sync` update decoded and its reply encoded.

Compares bullet_py's text codec with plain ``erlastic.decode`` /
``erlastic.encode`` on the same message.  erlastic only reads bytes 0-255, so
its input is the Latin-1 version of the message; bullet_py is timed on both
that and the page's real text (a name above U+00FF).  Prints a table; no
assertions (machines are noisy: compare the ratio, not the absolute figures).

    python bench/codec.py [--iterations N] [--repeats R]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import erlastic

from bullet_py.codec import Atom, decode, encode


def update_message(name: str) -> Any:
    """What ``Backbone.sync("update", character)`` sends through ``Stream.action``."""
    props = [
        (Atom("id"), 1),
        (Atom("name"), name),
        (Atom("hp"), 42),
        (Atom("alive"), True),
        (Atom("title"), "Knight of the Realm"),
    ]
    return (Atom("sync"), (Atom("update"), Atom("character"), props))


def best_per_call(cases: list[Callable[[], object]], iterations: int, repeats: int) -> list[float]:
    """Best mean seconds per call of each case; cases take turns so load hits all alike."""
    best = [float("inf")] * len(cases)
    for _ in range(repeats):
        for i, fn in enumerate(cases):
            start = time.perf_counter()
            for _ in range(iterations):
                fn()
            best[i] = min(best[i], (time.perf_counter() - start) / iterations)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    n, r = args.iterations, args.repeats

    page_text = encode(update_message("Łukasz"))  # what a BERT-JS page sends
    latin_text = encode(update_message("Zoë"))  # same shape, every unit a byte
    latin_bytes = latin_text.encode("latin-1")

    def reply_for(msg: Any) -> Any:
        (_, (_, _, props)) = msg
        return (Atom("sync"), Atom("ok"), props)

    ours_page_reply = reply_for(decode(page_text))
    ours_latin_reply = reply_for(decode(latin_text))
    erl_reply = reply_for(erlastic.decode(latin_bytes))

    cases: list[tuple[str, int, Callable[[], object], Callable[[], object]]] = [
        (
            "erlastic (bytes, Latin-1 msg)",
            len(latin_bytes),
            lambda: erlastic.decode(latin_bytes),
            lambda: erlastic.encode(erl_reply),
        ),
        (
            "bullet_py (text, Latin-1 msg)",
            len(latin_text),
            lambda: decode(latin_text),
            lambda: encode(ours_latin_reply),
        ),
        (
            "bullet_py (text, page msg 'Łukasz')",
            len(page_text),
            lambda: decode(page_text),
            lambda: encode(ours_page_reply),
        ),
    ]
    timings = best_per_call([f for case in cases for f in case[2:]], n, r)
    rows = [
        (label, size, timings[2 * i], timings[2 * i + 1])
        for i, (label, size, _, _) in enumerate(cases)
    ]

    base = rows[0][2] + rows[0][3]
    print(f"Python {platform.python_version()}, erlastic {erlastic.__version__}, ", end="")
    print(f"{n} iterations x best of {r}")
    header = f"{'codec':<37} {'units':>5} {'decode us':>10} {'encode us':>10} "
    header += f"{'msgs/s':>9} {'vs erlastic':>11}"
    print(header)
    print("-" * len(header))
    for label, size, d, e in rows:
        total = d + e
        print(
            f"{label:<37} {size:>5} {d * 1e6:>10.2f} {e * 1e6:>10.2f} "
            f"{1 / total:>9,.0f} {base / total:>10.2f}x"
        )


if __name__ == "__main__":
    main()
