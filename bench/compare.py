"""Compare two ``bench/run.py --json`` runs: each bullet_py row as a ratio to raw aiohttp.

    python bench/compare.py before.json after.json

Absolute rates move with the machine between runs; the ratio of bullet_py to
the raw aiohttp server measured moments apart in the same run moves much
less, so that is what is compared. For each workload the main figure is
used (rate, or server CPU per message, or memory per connection, or
broadcast time), its per-repeat ratios' median, and the change after/before
(> 1 is better for rates, < 1 better for costs).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

# figure → True when higher is better
FIGURES = (
    ("rate", True),
    ("server_us_per_msg", False),
    ("kib_per_conn", False),
    ("bcast_ms", False),
)


def ratios(results: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for key, runs in results.items():
        workload, system = key.rsplit("/", 1)
        base = results.get(f"{workload}/aiohttp")
        if system != "bullet" or not base:
            continue
        for figure, _ in FIGURES:
            pairs = [
                (mine[figure], theirs[figure])
                for mine, theirs in zip(runs, base, strict=False)
                if mine.get(figure) and theirs.get(figure)
            ]
            if pairs:
                out[workload, figure] = statistics.median(m / t for m, t in pairs)
    return out


def codec(run: dict[str, Any]) -> float | None:
    """The codec's slowest row against erlastic (None for a run made with ``--no-codec``)."""
    if not run.get("codec"):
        return None
    return statistics.median(
        min(r["ratio"] for name, r in block["rows"].items() if name.startswith("bullet_py"))
        for block in run["codec"]
    )


def main() -> None:
    before = json.loads(Path(sys.argv[1]).read_text())
    after = json.loads(Path(sys.argv[2]).read_text())
    old, new = ratios(before["results"]), ratios(after["results"])
    better = dict(FIGURES)
    print("| workload | figure | before (× raw) | after (× raw) | after / before | worse by |")
    print("|---|---|--:|--:|--:|--:|")
    for key in sorted(old.keys() & new.keys()):
        change = new[key] / old[key]
        worse = (1 / change - 1) if better[key[1]] else (change - 1)
        print(
            f"| {key[0]} | {key[1]} | {old[key]:.2f} | {new[key]:.2f} | {change:.2f} "
            f"| {max(0.0, worse) * 100:.0f} % |"
        )
    c_old, c_new = codec(before), codec(after)
    if c_old is None or c_new is None:
        return
    print(
        f"| codec | slowest × erlastic | {c_old:.2f} | {c_new:.2f} | {c_new / c_old:.2f} "
        f"| {max(0.0, 1 - c_new / c_old) * 100:.0f} % |"
    )


if __name__ == "__main__":
    main()
