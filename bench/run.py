"""Run every benchmark against every server and print one markdown report.

    python bench/run.py                 # full run: 3 repeats, then Redis: about 12 minutes
    python bench/run.py --smoke         # about 40 s: the aiohttp baselines, Bullet (and the
                                        # original Erlang Bullet when built), tiny N
    python bench/run.py --out report.md --json raw.json

Each server runs as its own process pinned to CPU 0 (``taskset -c 0``); this
process, the load generator, pins itself to CPU 1. Within a repeat the
systems of one workload run back to back (in an order that rotates between
repeats), so each figure is compared with a raw aiohttp figure measured
moments before or after it. Every figure is the median of the repeats; every
ratio is the median of the per-repeat ratios.

The original Erlang Bullet (system ``erlang``) runs when it has been built
(bench/peers/erlang/setup.sh; ``ERLANG_BULLET_DIR`` if built elsewhere than the
default); otherwise it is skipped and the report says why.

Last, ``bench/redis_cost.py`` measures what Redis costs (one worker on Redis
against the in-memory store, cross-worker against same-worker pushes, 1 against
2 workers), its push and long-poll echo cells, unpinned (it runs redis-server,
its workers and its clients side by side); ``--no-redis`` leaves it out, and it
is skipped with the reason when there is no ``redis-server``.

The markdown goes to stdout (and ``--out``); progress goes to stderr. The exit
status is 1 if any row failed (a server that would not start or died, a
client error, a timeout), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from operator import le
from pathlib import Path
from typing import Any

import loadgen

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

SERVER_CORE = 0
CLIENT_CORE = 1

# glibc's malloc raises its mmap threshold the first time a large block is
# freed; until then asyncio's 256 KiB receive buffer costs an mmap, page faults
# and an munmap on every read. Which process gets there first is an accident
# of its allocation history (a fresh process measured 2.9 page faults per echo
# and up to half again the CPU). Every server starts from the values glibc
# settles on by itself in a long-running server, so all are measured alike.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "524288", "MALLOC_TRIM_THRESHOLD_": "1048576"}

# server key → script. Bullet's rows all use the bench server: it echoes like
# examples/echo.py, with the rate limits off. The example's default of 200
# WebSocket messages a second per connection (a burst of 1,000) closes an echo
# client of this benchmark with 1008 within seconds when the machine is quiet.
SCRIPTS = {
    "aiohttp": BENCH / "peers" / "raw_aiohttp.py",
    "plain": BENCH / "peers" / "plain_aiohttp.py",
    "bullet": BENCH / "servers" / "bullet_bench.py",
    "socketio": BENCH / "peers" / "socketio_server.py",
    "sockjs": BENCH / "peers" / "sockjs_server.py",
    # The aiohttp baselines again, on uvloop: bullet_py's runner picks uvloop
    # when it is installed, so these separate what the loop saves from what
    # the server's own code costs.
    "plain-uv": BENCH / "peers" / "plain_aiohttp.py",
    "aiohttp-uv": BENCH / "peers" / "raw_aiohttp.py",
}
SCRIPT_ARGS = {"plain-uv": ["--loop", "uvloop"], "aiohttp-uv": ["--loop", "uvloop"]}
# The original Erlang Bullet: bench/peers/erlang/start.sh, as an echo or a push server.
ERLANG = BENCH / "peers" / "erlang"
ERLANG_SERVERS = {"erlang": [], "erlang-push": ["--push"]}
NAMES = {
    "aiohttp": "raw aiohttp",
    "plain": "plain aiohttp",
    "plain-uv": "plain aiohttp on uvloop",
    "aiohttp-uv": "raw aiohttp on uvloop",
    "erlang": "original Erlang Bullet",
    "bullet": "**bullet_py**",
    "socketio": "python-socketio",
    "sockjs": "sockjs",
}
PEER_MODULES = {"socketio": "socketio", "sockjs": "sockjs"}


@dataclasses.dataclass(frozen=True)
class Entry:
    system: str  # aiohttp, plain, bullet, erlang, socketio, sockjs
    wire: str  # a loadgen.WIRES key
    server: str  # a SCRIPTS or ERLANG_SERVERS key


@dataclasses.dataclass(frozen=True)
class Group:
    """Systems measured the same way, side by side; the first is the baseline."""

    key: str
    workload: str  # a loadgen.WORKLOADS key
    title: str  # the transport, as the table names it
    entries: tuple[Entry, ...]
    params: tuple[tuple[str, Any], ...] = ()
    section: str = ""  # the report's section (default: the workload's)
    # Echo only: measure the systems in turn, in short slices over the same
    # stretch of time (loadgen.echo_in_turn), instead of one after the other.
    in_turn: bool = False

    @property
    def where(self) -> str:
        return self.section or self.workload


def _e(system: str, wire: str, server: str | None = None) -> Entry:
    return Entry(system, wire, server or system)


def _ws(*more: Entry) -> tuple[Entry, ...]:
    return (
        _e("aiohttp", "bullet-ws"),
        *more,
        # The bench server for echo too: it echoes like examples/echo.py, with the
        # per-connection message budget off (50 clients each send as fast as they
        # are answered, far past the default 200 messages/s of a real page).
        _e("bullet", "bullet-ws"),
        _e("socketio", "sio-ws"),
        _e("sockjs", "sockjs-ws"),
    )


def _poll(*more: Entry) -> tuple[Entry, ...]:
    # Bullet's long-poll rows all use the bench server: it echoes like
    # examples/echo.py, with the POST rate limits off (see its docstring).
    return (
        _e("aiohttp", "bullet-poll"),
        *more,
        _e("bullet", "bullet-poll"),
        _e("socketio", "sio-poll"),
        _e("sockjs", "sockjs-xhr"),
    )


# The least aiohttp server echoes and holds WebSockets, nothing else. The
# original Erlang Bullet echoes, or (its push server) pushes to every
# connection unasked; it has no broadcast and nothing to ask a push of, so it
# has no broadcast or delivery rows.
PLAIN_WS = _e("plain", "bullet-ws")
PLAIN_UV_WS = _e("plain-uv", "bullet-ws")
RAW_UV_POLL = _e("aiohttp-uv", "bullet-poll")
ERLANG_WS = _e("erlang", "original-ws")
ERLANG_WS_PUSH = _e("erlang", "original-ws", "erlang-push")
ERLANG_POLL = _e("erlang", "original-poll")
ERLANG_POLL_PUSH = _e("erlang", "original-poll", "erlang-push")


GROUPS = (
    Group("echo-ws", "echo", "WebSocket", _ws(PLAIN_WS, PLAIN_UV_WS, ERLANG_WS), in_turn=True),
    Group("echo-poll", "echo", "long-poll", _poll(RAW_UV_POLL, ERLANG_POLL), in_turn=True),
    Group("push-ws", "push", "WebSocket", _ws(ERLANG_WS_PUSH), (("batch", 50), ("windows", 2))),
    Group(
        "push-sse",
        "push",
        "event stream",
        (
            _e("aiohttp", "bullet-sse"),
            _e("erlang", "original-sse", "erlang-push"),
            _e("bullet", "bullet-sse"),
        ),
        (("batch", 50), ("windows", 2)),
    ),
    Group(
        "push-poll",
        "push",
        "long-poll, backlog",
        _poll(ERLANG_POLL_PUSH),
        (("batch", 50), ("windows", 2)),
    ),
    Group(
        "deliver-poll",
        "push",
        "long-poll",
        _poll(),
        (("batch", 1), ("windows", 1)),
        "deliver",
    ),
    Group(
        "deliver-poll-100ms",
        "push",
        "long-poll, 100 ms pause",
        (_e("aiohttp", "bullet-poll-100ms"), _e("bullet", "bullet-poll-100ms")),
        (("batch", 1), ("windows", 1)),
        "deliver",
    ),
    Group("broadcast-ws", "broadcast", "WebSocket", _ws()),
    Group("idle-ws", "idle", "WebSocket", _ws(PLAIN_WS, PLAIN_UV_WS, ERLANG_WS)),
    Group("idle-poll", "idle", "parked long-poll", _poll(RAW_UV_POLL, ERLANG_POLL)),
    Group(
        "idle-sse",
        "idle",
        "event stream",
        (
            _e("aiohttp", "bullet-sse"),
            _e("erlang", "original-sse"),
            _e("bullet", "bullet-sse"),
        ),
    ),
)


@dataclasses.dataclass
class Settings:
    repeats: int = 3
    clients: int = 50
    warmup: float = 1.0
    duration: float = 3.0
    broadcast_n: int = 1000
    rounds: int = 10
    idle_n: int = 1000
    codec_iterations: int = 1000
    codec_repeats: int = 15
    quiet: float = 0.5  # idle: how long the server must be calm before RSS is read
    pin: bool = True  # servers on CPU 0, load generator on CPU 1 (smoke: off, for speed)
    redis_args: tuple[str, ...] = ()  # more arguments for bench/redis_cost.py
    systems: tuple[str, ...] = (
        "aiohttp",
        "aiohttp-uv",
        "plain",
        "plain-uv",
        "bullet",
        "erlang",
        "socketio",
        "sockjs",
    )


SMOKE = Settings(
    repeats=1,
    clients=4,
    warmup=0.1,
    duration=0.3,
    broadcast_n=20,
    rounds=3,
    idle_n=20,
    codec_iterations=100,
    codec_repeats=2,
    quiet=0.2,
    pin=False,
    redis_args=("--smoke",),
    systems=("aiohttp", "plain", "plain-uv", "bullet", "erlang"),
)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- processes -----------------------------------------------------------------


_PINNING: list[bool] = []


def can_pin() -> bool:
    """taskset exists and CPUs 0 and 1 are ours (decided once, before we pin ourselves)."""
    if not _PINNING:
        _PINNING.append(
            shutil.which("taskset") is not None
            and {SERVER_CORE, CLIENT_CORE} <= os.sched_getaffinity(0)
        )
    return _PINNING[0]


def erlang_dir() -> Path:
    """Where bench/peers/erlang/build.sh put the compiled peer."""
    given = os.environ.get("ERLANG_BULLET_DIR")
    if given:
        return Path(given)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "bullet_py" / "erlang_bullet"


ERLANG_APPS = ("cowlib", "ranch", "cowboy", "bullet", "bench")


def erlang_missing() -> str:
    """Why the original Erlang Bullet cannot run here ('' when it can)."""
    if shutil.which("erl") is None:
        return "no Erlang (`erl`) on PATH: apt-get install erlang-nox erlang-dev"
    for app in ERLANG_APPS:
        ebin = erlang_dir() / "lib" / app / "ebin"
        if not any(ebin.glob("*.beam")):
            return (
                f"not built (no {ebin}/*.beam): run bench/peers/erlang/setup.sh, "
                "or set ERLANG_BULLET_DIR to where build.sh put it"
            )
    return ""


def erlang_release() -> str:
    """The OTP release the peer runs on, for the report's versions line."""
    try:
        return subprocess.run(
            [
                "erl",
                "-noshell",
                "-eval",
                'io:format("OTP ~s", [erlang:system_info(otp_release)]), halt().',
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "OTP unknown"


def command(key: str, port: int) -> list[str]:
    """The server's command line; every server takes --host and --port."""
    if key in ERLANG_SERVERS:
        # start.sh exec's the Erlang VM, so the pid we get is beam.smp's.
        argv = ["sh", str(ERLANG / "start.sh"), *ERLANG_SERVERS[key]]
    else:
        argv = [sys.executable, str(SCRIPTS[key]), *SCRIPT_ARGS.get(key, [])]
    return [*argv, "--host", "127.0.0.1", "--port", str(port)]


_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A port nobody listens on, and not one this run handed out before.

    The idle rows start all their servers at once: the kernel may offer a port
    again once the probing socket is closed, before the first server bound it,
    and one of the two servers then died with EADDRINUSE (seen in two full runs).
    """
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port
    raise RuntimeError("no free port that was not handed out already")


class Server:
    """One server script as a child process, pinned to the server core."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        began = time.monotonic()
        pin = ["taskset", "-c", str(SERVER_CORE)] if can_pin() else []
        self.proc = await asyncio.create_subprocess_exec(
            *pin,
            *command(self.key, self.port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            cwd=ROOT,
            env={
                **os.environ,
                **CHILD_ENV,
                "PYTHONUNBUFFERED": "1",
                "ERLANG_BULLET_DIR": str(erlang_dir()),
            },
        )
        RUNNING.add(self)
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(30):
                while True:
                    raw = await self.proc.stdout.readline()
                    if not raw:
                        raise RuntimeError(f"{self.key} exited before listening: {self.tail()}")
                    line = raw.decode(errors="replace").rstrip()
                    self.output.append(line)
                    if line.startswith("listening on "):
                        break
        except BaseException:
            await self.stop()
            raise
        self._drain = asyncio.get_running_loop().create_task(self._drain_forever())
        if os.environ.get("BENCH_DEBUG"):
            log(f"   (started {self.key} in {time.monotonic() - began:.1f} s)")

    async def _drain_forever(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            self.output.append(raw.decode(errors="replace").rstrip())
            del self.output[:-40]

    def tail(self) -> str:
        return " | ".join(self.output[-5:])

    async def stop(self) -> None:
        began = time.monotonic()
        try:
            await self._stop()
        finally:
            if self.proc is not None and os.environ.get("BENCH_DEBUG"):
                log(f"   (stopped {self.key} in {time.monotonic() - began:.1f} s)")

    async def _stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 8)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(BaseException):
                await self._drain
        RUNNING.discard(self)


RUNNING: set[Server] = set()


def kill_everything() -> None:
    """Last resort (the runner itself is failing): kill each server we started, by pid."""
    for server in list(RUNNING):
        if server.proc is not None and server.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.proc.pid, signal.SIGKILL)


class Pool:
    """The servers of one repeat, started on first use, stopped together."""

    def __init__(self) -> None:
        self.servers: dict[str, Server] = {}

    async def get(self, key: str) -> Server:
        server = self.servers.get(key)
        if server is not None and not server.alive:
            await self.drop(key)
            server = None
        if server is None:
            server = Server(key)
            await server.start()
            self.servers[key] = server
        return server

    async def start(self, keys: set[str]) -> None:
        """Start these servers side by side (a failure shows up at first use)."""
        fresh = {key: Server(key) for key in keys if key not in self.servers}
        outcomes = await asyncio.gather(
            *(server.start() for server in fresh.values()), return_exceptions=True
        )
        for (key, server), outcome in zip(fresh.items(), outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                self.servers[key] = server

    async def drop(self, key: str) -> None:
        server = self.servers.pop(key, None)
        if server is not None:
            await server.stop()

    async def close(self) -> None:
        await asyncio.gather(*(self.drop(key) for key in list(self.servers)))


# --- one measurement -----------------------------------------------------------


def workload_kwargs(group: Group, s: Settings) -> dict[str, Any]:
    params = dict(group.params)
    if group.workload == "echo":
        return {"n": s.clients, "warmup": s.warmup, "duration": s.duration}
    if group.workload == "push":
        return {"n": s.clients, "warmup": s.warmup, "duration": s.duration, **params}
    if group.workload == "broadcast":
        return {"n": s.broadcast_n, "rounds": s.rounds}
    return {"n": s.idle_n, "quiet": s.quiet}


def row_budget(group: Group, s: Settings) -> float:
    if group.workload in ("echo", "push"):
        return s.warmup + s.duration + 60
    return 180.0


async def measure(server: Server, entry: Entry, group: Group, s: Settings) -> dict[str, Any]:
    make = loadgen.factory(entry.wire, server.base)
    probe = loadgen.ServerProbe(server.pid)
    began = time.monotonic()
    try:
        async with asyncio.timeout(row_budget(group, s)):
            result = await loadgen.WORKLOADS[group.workload](
                make, probe, **workload_kwargs(group, s)
            )
    except Exception as exc:
        return {"failed": f"{type(exc).__name__}: {exc}"[:300] + f" [{server.tail()}]"}
    return judged(result, server, time.monotonic() - began)


def judged(result: dict[str, Any], server: Server, seconds: float) -> dict[str, Any]:
    """A row's figures, marked failed if its server died or a client saw an error."""
    if not server.alive:
        result["failed"] = f"server died: {server.tail()}"
    elif result.get("errors"):
        result["failed"] = f"{result['errors']} client error(s): {result.get('error', '')}"
    result["seconds"] = seconds
    return result


async def measure_in_turn(
    pool: Pool, entries: list[Entry], group: Group, s: Settings
) -> list[dict[str, Any]]:
    """Every system of an echo group at once, in turns (loadgen.echo_in_turn)."""
    servers: dict[str, Server] = {}
    results: dict[str, dict[str, Any]] = {}
    for entry in entries:
        try:
            servers[entry.system] = await pool.get(entry.server)
        except Exception as exc:
            results[entry.system] = {"failed": f"server: {exc}"[:300]}
    began = time.monotonic()
    makes = {
        e.system: loadgen.factory(e.wire, servers[e.system].base)
        for e in entries
        if e.system in servers
    }
    probes = {key: loadgen.ServerProbe(server.pid) for key, server in servers.items()}
    slices = 10 if s.duration >= 1 else 2
    budget = len(makes) * (s.warmup + s.duration + slices * 0.05 + 30) + 30
    try:
        async with asyncio.timeout(budget):
            measured = await loadgen.echo_in_turn(
                makes, probes, n=s.clients, warmup=s.warmup, duration=s.duration, slices=slices
            )
    except Exception as exc:
        measured = {key: {"failed": f"{type(exc).__name__}: {exc}"[:300]} for key in makes}
    seconds = time.monotonic() - began
    for key, result in measured.items():
        server = servers[key]
        if "failed" in result:
            result["failed"] += f" [{server.tail()}]"
            result["seconds"] = seconds
        else:
            judged(result, server, seconds)
        results[key] = result
    for entry in entries:
        if "failed" in results[entry.system]:
            await pool.drop(entry.server)  # start clean for the next row
    return [results[entry.system] for entry in entries]


# --- scripts run whole (bench/codec.py, bench/redis_cost.py) ----------------------


def run_child(
    command: list[str], *, timeout: float, cpus: frozenset[int] | None = None
) -> subprocess.CompletedProcess[str] | None:
    """Run a benchmark script to its end from the project's root; None if it timed out.

    ``cpus``: the CPUs it may use (it inherits this process's, the client core's, else).
    """
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            check=False,
            env={**os.environ, **CHILD_ENV},
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
        )
    except subprocess.TimeoutExpired:
        return None


# --- codec (bench/codec.py, written separately) ---------------------------------

CODEC_ROW = re.compile(
    r"^(?P<label>.+?)\s+(?P<units>\d+)\s+(?P<dec>[\d.]+)\s+(?P<enc>[\d.]+)\s+"
    r"(?P<rate>[\d,]+)\s+(?P<ratio>[\d.]+)x\s*$"
)


def run_codec(s: Settings) -> dict[str, Any]:
    """Run bench/codec.py on the server core; parse its table."""
    script = BENCH / "codec.py"
    if not script.exists():
        return {"failed": "bench/codec.py is missing"}
    pin = ["taskset", "-c", str(SERVER_CORE)] if can_pin() else []
    command = [
        *pin,
        sys.executable,
        str(script),
        "--iterations",
        str(s.codec_iterations),
        "--repeats",
        str(s.codec_repeats),
    ]
    done = run_child(command, timeout=120)
    if done is None:
        return {"failed": "bench/codec.py timed out"}
    rows = {}
    for line in done.stdout.splitlines():
        match = CODEC_ROW.match(line.strip())
        if match:
            rows[match["label"].strip()] = {
                "decode_us": float(match["dec"]),
                "encode_us": float(match["enc"]),
                "rate": float(match["rate"].replace(",", "")),
                "ratio": float(match["ratio"]),
            }
    if done.returncode != 0 or not rows:
        return {
            "failed": f"bench/codec.py: exit {done.returncode}",
            "text": done.stdout + done.stderr,
        }
    return {"rows": rows, "header": done.stdout.splitlines()[0] if done.stdout else ""}


# --- Redis (bench/redis_cost.py, written separately) -------------------------------

#: Its cells run here: pushes and long-poll echoes (the polling queue has no target).
REDIS_CELLS = r"\.(push|echo)$"
#: Its ratios that have a target: (its name for the ratio, this report's, the least).
REDIS_TARGETS = (
    ("pushes, redis 1 worker / memory (b/a)", "Redis, pushes: 1 worker ÷ in memory", 0.8),
    (
        "long-poll echo, redis 1 worker / memory (b/a)",
        "Redis, long-poll echo: 1 worker ÷ in memory",
        0.8,
    ),
    ("pushes, cross-worker / same-worker (d/c)", "Redis, pushes: cross- ÷ same-worker", 0.8),
)
#: The CPUs this process may use before main() pins it to the client core.
ALL_CPUS = frozenset(os.sched_getaffinity(0))


def run_redis(s: Settings) -> dict[str, Any]:
    """Run bench/redis_cost.py (unpinned, as it is meant to run); its report and ratios."""
    if shutil.which("redis-server") is None:
        return {"skipped": "no redis-server on PATH (scripts/setup.sh installs it)"}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "redis.json"
        command = [sys.executable, str(BENCH / "redis_cost.py"), "--only", REDIS_CELLS]
        command += ["--repeats", str(s.repeats), "--json", str(raw), *s.redis_args]
        done = run_child(command, timeout=900, cpus=ALL_CPUS)
        if done is None:
            return {"failed": "bench/redis_cost.py timed out"}
        if done.returncode != 0 or not raw.exists():
            return {
                "failed": f"bench/redis_cost.py: exit {done.returncode}",
                "text": (done.stdout + done.stderr)[-2000:],
            }
        measured = json.loads(raw.read_text())
    return {"report": done.stdout.strip(), "ratios": measured["ratios"]}


# --- the run -----------------------------------------------------------------------


Results = dict[str, list[dict[str, Any]]]  # "group/system" → one dict per repeat


def selected(groups: tuple[Group, ...], s: Settings, only: str | None) -> list[Group]:
    chosen = []
    for group in groups:
        if only and not re.search(only, group.key):
            continue
        entries = tuple(e for e in group.entries if e.system in s.systems)
        if len(entries) > 0:
            chosen.append(dataclasses.replace(group, entries=entries))
    return chosen


def rotated(entries: tuple[Entry, ...], turn: int) -> list[Entry]:
    turn %= len(entries)
    return list(entries[turn:] + entries[:turn])


async def run_all(
    s: Settings, groups: list[Group], with_codec: bool
) -> tuple[Results, list[dict[str, Any]]]:
    results: Results = {}
    codec: list[dict[str, Any]] = []
    started = time.monotonic()
    for repeat in range(s.repeats):
        log(f"== repeat {repeat + 1}/{s.repeats} ({time.monotonic() - started:.0f} s)")
        pool = Pool()
        # Idle rows get a fresh server each (RSS is measured from its own
        # baseline). Every server of the repeat starts now, in one go; idle
        # ones use no CPU until their row.
        idle = [(g, e) for g in groups if g.workload == "idle" for e in rotated(g.entries, repeat)]
        fresh = {(g.key, e): Server(e.server) for g, e in idle}
        stopping: list[asyncio.Future[None]] = []
        try:
            needed = {e.server for g in groups if g.workload != "idle" for e in g.entries}
            fresh_started, _ = await asyncio.gather(
                asyncio.gather(*(srv.start() for srv in fresh.values()), return_exceptions=True),
                pool.start(needed),
            )
            for group in (g for g in groups if g.workload != "idle"):
                if group.in_turn:
                    entries = rotated(group.entries, repeat)
                    for entry, result in zip(
                        entries, await measure_in_turn(pool, entries, group, s), strict=True
                    ):
                        results.setdefault(f"{group.key}/{entry.system}", []).append(result)
                        log(f"   {group.key:<20} {entry.system:<9} {brief(result)}")
                    continue
                for entry in rotated(group.entries, repeat):
                    try:
                        server = await pool.get(entry.server)
                    except Exception as exc:
                        result: dict[str, Any] = {"failed": f"server: {exc}"[:300]}
                    else:
                        result = await measure(server, entry, group, s)
                        if "failed" in result:
                            await pool.drop(entry.server)  # start clean for the next row
                    results.setdefault(f"{group.key}/{entry.system}", []).append(result)
                    log(f"   {group.key:<20} {entry.system:<9} {brief(result)}")
            stopping.append(asyncio.ensure_future(pool.close()))
            for (group, entry), outcome in zip(idle, fresh_started, strict=True):
                server = fresh[(group.key, entry)]
                if isinstance(outcome, BaseException):
                    result = {"failed": f"server: {outcome}"[:300]}
                else:
                    result = await measure(server, entry, group, s)
                    stopping.append(asyncio.ensure_future(server.stop()))
                results.setdefault(f"{group.key}/{entry.system}", []).append(result)
                log(f"   {group.key:<20} {entry.system:<9} {brief(result)}")
        finally:
            await asyncio.gather(*stopping, pool.close(), *(srv.stop() for srv in fresh.values()))
        if with_codec:
            log("   codec")
            codec.append(await asyncio.to_thread(run_codec, s))
    log(f"== done in {time.monotonic() - started:.0f} s")
    return results, codec


def brief(result: dict[str, Any]) -> str:
    if "failed" in result:
        return "FAILED " + result["failed"]
    keys = (
        "rate",
        "p50_ms",
        "server_us_per_msg",
        "bcast_ms",
        "server_cpu_ms",
        "kib_per_conn",
        "seconds",
    )
    return "  ".join(f"{k}={result[k]:.1f}" for k in keys if k in result)


# --- the report ---------------------------------------------------------------------


def figures(results: Results, key: str, name: str) -> list[float]:
    return [r[name] for r in results.get(key, []) if "failed" not in r and name in r]


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def ratio(results: Results, a: str, b: str, name: str) -> float:
    """Median over repeats of a/b, pairing the figures of the same repeat."""
    pairs = [
        x[name] / y[name]
        for x, y in zip(results.get(a, []), results.get(b, []), strict=False)
        if "failed" not in x and "failed" not in y and x.get(name) and y.get(name)
    ]
    return median(pairs)


def fmt(value: float, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}×"


def failures(results: Results, key: str) -> str:
    failed = [r["failed"] for r in results.get(key, []) if "failed" in r]
    return f"failed {len(failed)}×: {failed[0]}" if failed else ""


SECTIONS = {
    "echo": (
        "Echo",
        "{n} clients, one message (100 characters) in flight each; messages/s over {t} s "
        "after {w} s of warm-up. The systems of a row are all connected at once and take "
        "turns in ten slices (two with --smoke), so that they meet the same noise from the "
        "machine. Every long-poll client speaks through a lean HTTP/1.1 client "
        "(bench/leanhttp.py). Round trips are client-side.",
    ),
    "push": (
        "Push",
        "{n} clients; each keeps two requests for 50 messages outstanding (`push:50`) and asks "
        "again whenever 50 have arrived, so the server always has something to push; "
        "delivered messages/s. On long-poll the peers answer a poll with every queued message "
        "at once, Bullet (and its original client) with exactly one.",
    ),
    "deliver": (
        "Long-poll delivery",
        "{n} clients, one message in flight each: the client asks for it (`POST push:1`), the "
        "server pushes it, the held `GET` delivers it, the client asks again. Delivered "
        "messages/s; latency from the ask to the delivery. The 100 ms rows re-poll 100 ms "
        "after each answer, as the original `bullet.js` does.",
    ),
    "broadcast": (
        "Broadcast",
        "{b} WebSocket connections; one of them asks for a broadcast and the clock stops when "
        "all {b} have it; median of {r} rounds. Server CPU is per broadcast.",
    ),
    "idle": (
        "Idle connections",
        "{i} connections held open (for long-poll: each with a parked `GET`); growth of the "
        "server's RSS from its own baseline (after 20 connections were opened and closed), "
        "per connection.",
    ),
}


# The overview: issue #13's table, one row per (group, figure).
OVERVIEW_ROWS = (
    ("long-poll echo, msg/s", "echo-poll", "rate", 0),
    ("long-poll push, msg/s (bullet: 1 per poll)", "push-poll", "rate", 0),
    ("WebSocket echo, msg/s", "echo-ws", "rate", 0),
    ("WebSocket push, msg/s", "push-ws", "rate", 0),
    ("idle WebSocket, KiB each", "idle-ws", "kib_per_conn", 1),
    ("parked poll, KiB each", "idle-poll", "kib_per_conn", 1),
)
OVERVIEW_SYSTEMS = (
    "bullet",
    "plain",
    "plain-uv",
    "aiohttp",
    "aiohttp-uv",
    "erlang",
    "socketio",
    "sockjs",
)


def overview(results: Results, groups: list[Group]) -> str:
    """Every system side by side, with bullet_py's ratio to each aiohttp baseline and to Erlang."""
    keys = {g.key for g in groups}
    rows = [row for row in OVERVIEW_ROWS if row[1] in keys]
    if not rows:
        return ""
    systems = [x for x in OVERVIEW_SYSTEMS if any(f"{g}/{x}" in results for _, g, _, _ in rows)]
    versus = [x for x in ("plain", "plain-uv", "aiohttp", "aiohttp-uv", "erlang") if x in systems]
    head = [NAMES[x] for x in systems] + [f"bullet_py ÷ {NAMES[x]}" for x in versus]
    out = [
        "### Overview\n",
        "Medians of the rows below; a ratio is the median of the per-repeat ratios. "
        "On long-poll push python-socketio and sockjs answer a poll with every queued "
        "message, Bullet (both) with one.\n",
        "| workload | " + " | ".join(head) + " |",
        "|---|" + "--:|" * len(head),
    ]
    for label, group, name, digits in rows:
        cells = []
        for system in systems:
            key = f"{group}/{system}"
            cell = fmt(median(figures(results, key, name)), digits) if key in results else "—"
            if failures(results, key):
                cell += " ⚠"
            cells.append(cell)
        for system in versus:
            cells.append(fmt_ratio(ratio(results, f"{group}/bullet", f"{group}/{system}", name)))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def report(
    s: Settings,
    groups: list[Group],
    results: Results,
    codec: list[dict[str, Any]],
    meta: dict[str, Any],
    redis: dict[str, Any],
) -> str:
    out: list[str] = []
    w = out.append
    w("## Results\n")
    w(f"Run {meta['date']}, {s.repeats} repeat(s), {meta['elapsed']:.0f} s in all.")
    w(f"{meta['machine']}\n")
    w(f"Versions: {meta['versions']}\n")
    for note in meta.get("notes", []):
        w(f"Note: {note}.\n")
    w(overview(results, groups))
    for workload, (title, text) in SECTIONS.items():
        mine = [g for g in groups if g.where == workload]
        if not mine:
            continue
        w(f"### {title}\n")
        w(
            text.format(
                n=s.clients, t=s.duration, w=s.warmup, b=s.broadcast_n, r=s.rounds, i=s.idle_n
            )
            + "\n"
        )
        if workload in ("echo", "push", "deliver"):
            w(
                "| transport | system | msg/s | × raw | p50 ms | p99 ms | server µs/msg "
                "| × raw | server CPU | client CPU |"
            )
            w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
        elif workload == "broadcast":
            w("| transport | system | time to all, ms | × raw | best ms | server CPU ms | × raw |")
            w("|---|---|--:|--:|--:|--:|--:|")
        else:
            w("| transport | system | KiB per connection | × raw | server RSS before, MiB |")
            w("|---|---|--:|--:|--:|")
        for group in mine:
            base = f"{group.key}/aiohttp"
            for entry in group.entries:
                key = f"{group.key}/{entry.system}"
                name = NAMES[entry.system]
                note = failures(results, key)
                label = group.title
                if workload in ("echo", "push", "deliver"):
                    p50 = median(figures(results, key, "p50_ms"))
                    p99 = median(figures(results, key, "p99_ms"))
                    cells = [
                        fmt(median(figures(results, key, "rate"))),
                        fmt_ratio(ratio(results, key, base, "rate")),
                        fmt(p50, 1),
                        fmt(p99, 1),
                        fmt(median(figures(results, key, "server_us_per_msg")), 1),
                        fmt_ratio(ratio(results, key, base, "server_us_per_msg")),
                        fmt(median(figures(results, key, "server_cpu")), 2),
                        fmt(median(figures(results, key, "client_cpu")), 2),
                    ]
                elif workload == "broadcast":
                    cells = [
                        fmt(median(figures(results, key, "bcast_ms")), 1),
                        fmt_ratio(ratio(results, key, base, "bcast_ms")),
                        fmt(median(figures(results, key, "bcast_best_ms")), 1),
                        fmt(median(figures(results, key, "server_cpu_ms")), 1),
                        fmt_ratio(ratio(results, key, base, "server_cpu_ms")),
                    ]
                else:
                    cells = [
                        fmt(median(figures(results, key, "kib_per_conn")), 1),
                        fmt_ratio(ratio(results, key, base, "kib_per_conn")),
                        fmt(median(figures(results, key, "rss_before_mib")), 1),
                    ]
                if note:
                    cells[-1] += f" ⚠ {note}"
                w(f"| {label} | {name} | " + " | ".join(cells) + " |")
        w("")
    if codec:
        w("### Codec\n")
        w(
            "`bench/codec.py` (decode a Stream `sync` update and encode its reply), run on the "
            "server core; median per-call times of the repeats.\n"
        )
        ok = [c for c in codec if "rows" in c]
        if ok:
            w(f"{ok[0].get('header', '')}\n")
            w("| codec | decode µs | encode µs | msg/s | × erlastic |")
            w("|---|--:|--:|--:|--:|")
            for label in ok[0]["rows"]:
                vals = [c["rows"][label] for c in ok if label in c["rows"]]
                w(
                    f"| {label} | {fmt(median([v['decode_us'] for v in vals]), 2)} "
                    f"| {fmt(median([v['encode_us'] for v in vals]), 2)} "
                    f"| {fmt(median([v['rate'] for v in vals]))} "
                    f"| {fmt_ratio(median([v['ratio'] for v in vals]))} |"
                )
        for c in codec:
            if "failed" in c:
                w(f"\ncodec failed: {c['failed']}\n")
                if c.get("text"):
                    w("```\n" + c["text"].strip()[:2000] + "\n```")
        w("")
    w("### Redis: what it costs\n")
    if "report" in redis:
        w(
            "`bench/redis_cost.py`, its push and long-poll echo cells (redis-server, the "
            "workers and the clients unpinned):\n"
        )
        w(redis["report"] + "\n")
    elif "skipped" in redis:
        w(f"Skipped: {redis['skipped']}.\n")
    else:
        w(f"bench/redis_cost.py failed: {redis.get('failed')}\n")
        if redis.get("text"):
            w("```\n" + redis["text"].strip() + "\n```\n")
    w(targets(results, codec, redis))
    return "\n".join(out)


def targets(results: Results, codec: list[dict[str, Any]], redis: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, float, Callable[[float], bool]]] = []

    def add(
        what: str, goal: str, value: float, check: Callable[[float], bool], shown: str = ""
    ) -> None:
        rows.append((what, goal, shown or fmt_ratio(value), value, check))

    # Issue #13's: the original Bullet, the least aiohttp WebSocket server, memory.
    add(
        "long-poll echo, msg/s, vs the original Erlang Bullet",
        "≥ 1.0×",
        ratio(results, "echo-poll/bullet", "echo-poll/erlang", "rate"),
        lambda v: v >= 1.0,
    )
    add(
        "WebSocket echo, msg/s, vs plain aiohttp",
        "≥ 0.95×",
        ratio(results, "echo-ws/bullet", "echo-ws/plain", "rate"),
        lambda v: v >= 0.95,
    )
    add(
        "memory per idle WebSocket, vs plain aiohttp",
        "≤ 1.0×",
        ratio(results, "idle-ws/bullet", "idle-ws/plain", "kib_per_conn"),
        lambda v: v <= 1.0,
    )
    add(
        "WebSocket echo, msg/s",
        "≥ 0.9× raw",
        ratio(results, "echo-ws/bullet", "echo-ws/aiohttp", "rate"),
        lambda v: v >= 0.9,
    )
    add(
        "WebSocket echo, server CPU per message",
        "≤ 1.11× raw",
        ratio(results, "echo-ws/bullet", "echo-ws/aiohttp", "server_us_per_msg"),
        lambda v: v <= 1 / 0.9,
    )
    add(
        "WebSocket push, msg/s",
        "≥ 0.9× raw",
        ratio(results, "push-ws/bullet", "push-ws/aiohttp", "rate"),
        lambda v: v >= 0.9,
    )
    add(
        "WebSocket push, server CPU per message",
        "≤ 1.11× raw",
        ratio(results, "push-ws/bullet", "push-ws/aiohttp", "server_us_per_msg"),
        lambda v: v <= 1 / 0.9,
    )
    add(
        "long-poll delivery, msg/s, vs python-socketio",
        "≥ 1.5×",
        ratio(results, "deliver-poll/bullet", "deliver-poll/socketio", "rate"),
        lambda v: v >= 1.5,
    )
    add(
        "long-poll delivery, server CPU per message, python-socketio's / bullet_py's",
        "≥ 1.5×",
        ratio(results, "deliver-poll/socketio", "deliver-poll/bullet", "server_us_per_msg"),
        lambda v: v >= 1.5,
    )
    add(
        "long-poll delivery, msg/s, vs sockjs",
        "≥ 1.0×",
        ratio(results, "deliver-poll/bullet", "deliver-poll/sockjs", "rate"),
        lambda v: v >= 1.0,
    )
    add(
        "memory per idle WebSocket",
        "≤ 1.25× raw",
        ratio(results, "idle-ws/bullet", "idle-ws/aiohttp", "kib_per_conn"),
        lambda v: v <= 1.25,
    )
    kib = median(figures(results, "idle-poll/bullet", "kib_per_conn"))
    add("memory per parked poll", "≤ 10 KiB", kib, lambda v: v <= 10, fmt(kib, 1) + " KiB")
    add(
        "broadcast to 1,000 WebSockets, time",
        "≤ 1.2× raw",
        ratio(results, "broadcast-ws/bullet", "broadcast-ws/aiohttp", "bcast_ms"),
        lambda v: v <= 1.2,
    )
    add(
        "broadcast to 1,000 WebSockets, server CPU",
        "≤ 1.2× raw",
        ratio(results, "broadcast-ws/bullet", "broadcast-ws/aiohttp", "server_cpu_ms"),
        lambda v: v <= 1.2,
    )
    ok = [c for c in codec if "rows" in c]
    if ok:
        per_repeat = [
            min(v["ratio"] for label, v in c["rows"].items() if label.startswith("bullet_py"))
            for c in ok
        ]
        add(
            "codec, msg/s (slowest bullet_py case)",
            "≥ 1.0× erlastic",
            median(per_repeat),
            lambda v: v >= 1.0,
        )
    measured = redis.get("ratios", {})
    for name, what, least in REDIS_TARGETS:
        add(what, f"≥ {least}×", median(measured.get(name, [])), functools.partial(le, least))
    lines = ["### Targets\n", "| target | goal | measured | met |", "|---|---|--:|:-:|"]
    for what, goal, shown, value, check in rows:
        verdict = "–" if math.isnan(value) else ("yes" if check(value) else "**no**")
        lines.append(f"| {what} | {goal} | {shown} | {verdict} |")
    return "\n".join(lines) + "\n"


# --- environment ------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + (" + uncommitted changes in src/" if dirty else "")


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    pinned = (
        f"servers pinned to CPU {SERVER_CORE}, load generator to CPU {CLIENT_CORE}"
        if can_pin()
        else "not pinned (smoke run, or taskset or a second CPU missing)"
    )
    return (
        f"Machine: {model}, {os.cpu_count()} CPUs, Linux {platform.release()}; {pinned}; "
        f"load average at the end {load} (a shared machine: other jobs ran too)."
    )


def bullet_loop() -> str:
    """The loop bullet_py's runner serves on here: uvloop when it is installed."""
    from bullet_py.web.serve import loop_factory

    factory = loop_factory()
    if factory.__module__.startswith("uvloop"):
        return f"uvloop {version('uvloop')}"
    return "asyncio's loop"


def versions(loop_name: str, erlang: bool) -> str:
    parts = [
        f"Python {platform.python_version()}",
        f"aiohttp {version('aiohttp')}",
        f"bullet_py {version('bullet_py')} (git {git_commit()})",
        f"python-socketio {version('python-socketio')}",
        f"python-engineio {version('python-engineio')}",
        f"sockjs {version('sockjs')}",
        f"erlastic {version('erlastic')}",
        *(
            [f"original Erlang Bullet 0.4.1 on cowboy 1.0.4 ({erlang_release()}, +S 1:1)"]
            if erlang
            else []
        ),
        f"bullet_py on {bullet_loop()} (what its runner picks), the other Python servers "
        f"on asyncio's loop except the two '… on uvloop' baselines; load generator on "
        f"{loop_name}",
        "servers started with " + " ".join(f"{k}={v}" for k, v in CHILD_ENV.items()),
    ]
    return ", ".join(parts) + "."


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: for CI")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--duration", type=float, help="measured seconds per echo/push row")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--only", help="regex on group keys (e.g. 'echo|idle-ws')")
    parser.add_argument(
        "--systems",
        help="comma-separated subset of aiohttp,aiohttp-uv,plain,plain-uv,bullet,erlang,"
        "socketio,sockjs",
    )
    parser.add_argument("--no-codec", action="store_true")
    parser.add_argument("--no-redis", action="store_true", help="leave bench/redis_cost.py out")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument("--json", type=Path, help="write every raw figure here")
    args = parser.parse_args()

    s = dataclasses.replace(SMOKE) if args.smoke else Settings()
    if args.repeats:
        s.repeats = args.repeats
    if args.duration:
        s.duration = args.duration
    if args.clients:
        s.clients = args.clients
    if args.systems:
        s.systems = tuple(x.strip() for x in args.systems.split(",") if x.strip())
    missing = [
        system
        for system, module in PEER_MODULES.items()
        if system in s.systems and importlib.util.find_spec(module) is None
    ]
    notes = []
    if missing:
        notes.append(
            f"skipped {', '.join(NAMES[x] for x in missing)}: not installed "
            "(pip install python-socketio sockjs)"
        )
    if "erlang" in s.systems and (why := erlang_missing()):
        missing.append("erlang")
        notes.append(f"skipped the original Erlang Bullet: {why}")
    for note in notes:
        log(note)
    s.systems = tuple(x for x in s.systems if x not in missing)
    if "aiohttp" not in s.systems:
        s.systems = ("aiohttp", *s.systems)  # the baseline is never optional

    if not s.pin:
        _PINNING[:] = [False]
    if can_pin():
        os.sched_setaffinity(0, {CLIENT_CORE})
    loop_name = loadgen.use_uvloop()
    groups = selected(GROUPS, s, args.only)
    began = time.monotonic()
    try:
        results, codec = asyncio.run(run_all(s, groups, with_codec=not args.no_codec))
        redis: dict[str, Any] = {"skipped": "--no-redis"}
        if not args.no_redis:
            log("== bench/redis_cost.py")
            redis = run_redis(s)
    finally:
        kill_everything()
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed": time.monotonic() - began,
        "machine": machine(),
        "versions": versions(loop_name, "erlang" in s.systems),
        "notes": notes,
    }
    text = report(s, groups, results, codec, meta, redis)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "settings": dataclasses.asdict(s),
                    "results": results,
                    "codec": codec,
                    "redis": redis,
                    "meta": meta,
                },
                indent=1,
            )
        )
    failed = (
        any("failed" in r for rs in results.values() for r in rs)
        or any("failed" in c for c in codec)
        or "failed" in redis
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
