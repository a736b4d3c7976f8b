"""The benchmark runs: ``python bench/run.py --smoke`` (about 30 s) makes its table,
``bench/redis_cost.py``'s push and echo cells included;
``python bench/redis_cost.py --smoke`` (a few seconds) prints its cells and ratios.

Tiny N and one repeat, the two aiohttp baselines and bullet_py (the Python peers
are not needed), and the original Erlang Bullet when it has been built; when it
has not, the report must say so instead. This only proves that every workload
still runs against the project and that the report is produced, so the
benchmark cannot rot. The figures are not checked.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_ROWS = [
    "| WebSocket | raw aiohttp |",
    "| WebSocket | plain aiohttp |",
    "| WebSocket | **bullet_py** |",
    "| long-poll | raw aiohttp |",
    "| long-poll | **bullet_py** |",
    "| event stream | **bullet_py** |",
    "| long-poll, backlog | **bullet_py** |",
    "| long-poll, 100 ms pause | **bullet_py** |",
    "| parked long-poll | **bullet_py** |",
    # bench/redis_cost.py's cells and the targets it measures (CI installs redis-server)
    "| (b) redis, 1 worker | pushes |",
    "| (d) redis, 2 workers: push on 0, pages on 1 (cross-worker) | pushes |",
    "| (b) redis, 1 worker | long-poll echo msgs |",
    "| Redis, pushes: 1 worker ÷ in memory | ≥ 0.8× |",
    "| Redis, long-poll echo: 1 worker ÷ in memory | ≥ 0.8× |",
    "| Redis, pushes: cross- ÷ same-worker | ≥ 0.8× |",
]
SECTIONS = [
    "### Overview",
    "### Echo",
    "### Push",
    "### Long-poll delivery",
    "### Broadcast",
    "### Idle connections",
    "### Codec",
    "### Redis: what it costs",
    "### Targets",
]


@pytest.mark.timeout(240)
def test_smoke_benchmark_produces_the_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    for heading in SECTIONS:
        assert heading in text, heading
    for row in EXPECTED_ROWS:
        assert row in text, row
    # The original Erlang Bullet either ran or is skipped with the reason.
    assert (
        "| WebSocket | original Erlang Bullet |" in text
        or "Note: skipped the original Erlang Bullet:" in text
    ), text
    assert "⚠" not in text, text  # no row failed
    assert "failed" not in text.lower(), text


@pytest.mark.timeout(60)
async def test_instruction_count_clients_finish_against_the_bench_server() -> None:
    """``bench/echo_cost.py``'s clients (echo, push, long-poll backlog) run to their count.

    Without valgrind: only the drivers, against the same bench server in this
    process, so that the instruction counts cannot rot unseen. Each driver
    returns only once every message it counts has arrived.
    """
    from aiohttp import web

    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT / "bench" / "servers"))
    try:
        import bullet_bench
        import echo_cost
    finally:
        del sys.path[:2]
    runner = web.AppRunner(bullet_bench.make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await asyncio.wait_for(echo_cost._drive(port, 3, 30), 20)
        await asyncio.wait_for(echo_cost._drive(port, 3, 60, push=10), 20)
        await asyncio.wait_for(echo_cost._drive_polls(port, 3, 60, 10), 20)
    finally:
        await runner.cleanup()


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_smoke_redis_cost_prints_every_cell_and_ratio() -> None:
    """``bench/redis_cost.py --smoke``: memory and Redis servers, every workload, the ratios."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "redis_cost.py"), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout
    for cell in (
        "| (a) memory, 1 process | pushes |",
        "| (b) redis, 1 worker | long-poll via queue msgs |",
        "| (d) redis, 2 workers: push on 0, pages on 1 (cross-worker) | pushes |",
        "| redis, 2 workers: sessions split (aggregate) | long-poll echo msgs |",
        "| pushes, redis 1 worker / memory (b/a) | ≥ 0.8 |",
        "| pushes, cross-worker / same-worker (d/c) | ≥ 0.8 |",
        "| long-poll via queue, 2 workers / 1 worker | reported |",
    ):
        assert cell in text, cell


@pytest.mark.timeout(60)
def test_redis_pack_prints_both_packers() -> None:
    """``bench/redis_pack.py``: both packers time the same call (it checks their bytes agree)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "redis_pack.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for line in ("redis-py", "hiredis", "hiredis / redis-py:"):
        assert line in done.stdout, line
