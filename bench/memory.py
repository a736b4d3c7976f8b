"""Where a connection's bytes go: RSS per connection, and tracemalloc by file and line.

    python bench/memory.py                          # plain, raw and bullet_py, WebSocket and poll
    python bench/memory.py --systems bullet --kinds ws --top 30

For each server and kind of connection (``ws``: an idle WebSocket, ``poll``:
a parked long-poll ``GET``) it starts the server in a child process, opens
a few connections and closes them (a warm-up: aiohttp's and asyncio's
first-use caches), then opens N and reads what the server grew by:

- **RSS**: the child's ``VmRSS`` before and after, divided by N, in a run
  without tracemalloc (which adds its own bookkeeping to every block);
- **tracemalloc**: in a second run, the snapshot taken after the N against
  the one before, grouped by file and line (``--top`` entries) and by
  package (aiohttp, asyncio, bullet_py, the rest), in bytes per connection.

The clients are bare sockets that speak just enough HTTP and WebSocket
handshake to hold a connection open, so the server's figures are all that is
measured. Linux only (``/proc``). The figures of a run are in
docs/benchmarks.md, "Memory per connection".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SCRIPTS = {
    "plain": BENCH / "peers" / "plain_aiohttp.py",
    "aiohttp": BENCH / "peers" / "raw_aiohttp.py",
    "bullet": BENCH / "servers" / "bullet_bench.py",
}
KINDS = {"ws": ("plain", "aiohttp", "bullet"), "poll": ("aiohttp", "bullet")}
# As bench/run.py starts its servers: the allocator's settled thresholds.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "524288", "MALLOC_TRIM_THRESHOLD_": "1048576"}


# --- the server side (child process) ------------------------------------------


def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _bucket(filename: str) -> str:
    for name in ("bullet_py", "aiohttp", "multidict", "yarl", "asyncio"):
        if f"/{name}/" in filename:
            return name
    return "other"


def _diff(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int) -> Any:
    keep = (tracemalloc.Filter(False, tracemalloc.__file__),)
    before, after = before.filter_traces(keep), after.filter_traces(keep)
    lines = after.compare_to(before, "lineno")
    buckets: dict[str, int] = {}
    for stat in lines:
        name = _bucket(stat.traceback[0].filename)
        buckets[name] = buckets.get(name, 0) + stat.size_diff
    shown = [
        {
            "where": f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
            "bytes": s.size_diff / n,
            "blocks": s.count_diff / n,
        }
        for s in sorted(lines, key=lambda s: -s.size_diff)[:top]
    ]
    total = sum(buckets.values())
    return {
        "total": total / n,
        "buckets": {k: v / n for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])},
        "lines": shown,
    }


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3."):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3." else tail
    return filename


async def _serve(system: str, trace: bool, top: int) -> None:
    from aiohttp import web

    sys.path.insert(0, str(SCRIPTS[system].parent))
    spec = importlib.util.spec_from_file_location(f"_mem_{system}", SCRIPTS[system])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runner = web.AppRunner(module.make_app(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"port": port}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    before: tracemalloc.Snapshot | None = None
    rss = 0
    while line := (await reader.readline()).decode().strip():
        await asyncio.sleep(0.3)  # let the connections settle
        gc.collect()
        if line == "mark":
            rss = _rss()
            if trace:
                tracemalloc.start(1)
                before = tracemalloc.take_snapshot()
            print(json.dumps({"rss": rss}), flush=True)
        else:
            n = int(line.split()[1])
            grown = _rss() - rss
            out: dict[str, Any] = {"rss_per_conn": grown / n}
            if trace and before is not None:
                out["trace"] = _diff(before, tracemalloc.take_snapshot(), n, top)
            print(json.dumps(out), flush=True)
    await runner.cleanup()


# --- the client side ------------------------------------------------------------


async def _http(host: str, port: int, request: bytes) -> tuple[Any, Any, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


def _ws_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /bullet HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _get(port: int, cookie: str = "") -> bytes:
    extra = f"Cookie: {cookie}\r\n" if cookie else ""
    return (
        f"GET /bullet HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "X-Socket-Transport: xhrPolling\r\nX-Requested-With: XMLHttpRequest\r\n"
        f"Accept: text/plain, */*; q=0.01\r\n{extra}\r\n"
    ).encode()


async def _open(kind: str, port: int) -> Any:
    """One held connection: a WebSocket after its handshake, or a parked GET."""
    if kind == "ws":
        _, writer, head = await _http("127.0.0.1", port, _ws_request(port))
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head.decode(errors="replace"))
        return writer
    # A poll: the first GET gets the cookie (204), the second parks.
    _, writer, head = await _http("127.0.0.1", port, _get(port))
    cookie = ""
    for line in head.decode().split("\r\n"):
        if line.lower().startswith("set-cookie:"):
            cookie = line.split(":", 1)[1].split(";", 1)[0].strip()
    if not cookie:
        raise RuntimeError("no cookie: " + head.decode(errors="replace"))
    writer.write(_get(port, cookie))
    return writer


async def _open_all(kind: str, port: int, n: int) -> list[Any]:
    held: list[Any] = []
    for start in range(0, n, 50):
        held += await asyncio.gather(*(_open(kind, port) for _ in range(min(50, n - start))))
    return held


async def _close_all(held: list[Any]) -> None:
    for writer in held:
        writer.transport.abort()
    await asyncio.sleep(0.2)


async def _drive(kind: str, port: int, n: int, ask: Callable[[str], Any]) -> Any:
    await _close_all(await _open_all(kind, port, 20))  # the warm-up
    await asyncio.to_thread(ask, "mark")
    held = await _open_all(kind, port, n)
    result = await asyncio.to_thread(ask, f"report {n}")
    await _close_all(held)
    return result


def measure(system: str, kind: str, n: int, trace: bool, top: int) -> dict[str, Any]:
    """One server in a child process, ``n`` connections of ``kind``: what it grew by."""
    env = {**os.environ, **CHILD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    args = [sys.executable, __file__, "--serve", system, "--top", str(top)]
    if trace:
        args.append("--trace")
    child = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1
    )
    assert child.stdin is not None and child.stdout is not None

    def ask(line: str) -> dict[str, Any]:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(line + "\n")
        return json.loads(child.stdout.readline())  # type: ignore[no-any-return]

    try:
        port = json.loads(child.stdout.readline())["port"]
        result: dict[str, Any] = asyncio.run(_drive(kind, port, n, ask))
        return result
    finally:
        child.kill()  # parked requests would hold a graceful shutdown for their timeout
        child.wait()


def _report(system: str, kind: str, rss: float, traced: dict[str, Any] | None) -> None:
    print(f"\n## {system} {kind}: RSS {rss / 1024:.1f} KiB per connection")
    if traced is None:
        return
    buckets = ", ".join(f"{k} {v / 1024:.2f}" for k, v in traced["buckets"].items())
    print(f"tracemalloc {traced['total'] / 1024:.2f} KiB per connection ({buckets})")
    for line in traced["lines"]:
        print(f"  {line['bytes']:8.0f} B {line['blocks']:5.1f} blocks  {line['where']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--systems", default="plain,aiohttp,bullet")
    parser.add_argument("--kinds", default="ws,poll")
    parser.add_argument("-n", type=int, default=1000, help="connections held (default 1000)")
    parser.add_argument("--top", type=int, default=20, help="file:line entries shown")
    parser.add_argument("--no-trace", action="store_true", help="RSS only")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument(
        "--server-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop every server runs on (default asyncio's)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.serve:
        os.environ["BULLET_EVENT_LOOP"] = args.server_loop  # read by the servers' children
    if args.serve:
        from bullet_py.web.serve import loop_factory  # $BULLET_EVENT_LOOP, from --server-loop

        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(_serve(args.serve, args.trace, args.top))
        return
    results: dict[str, Any] = {}
    for kind in args.kinds.split(","):
        for system in args.systems.split(","):
            if system not in KINDS[kind]:
                continue
            rss = measure(system, kind, args.n, False, args.top)["rss_per_conn"]
            traced = (
                None if args.no_trace else measure(system, kind, args.n, True, args.top)["trace"]
            )
            _report(system, kind, rss, traced)
            results[f"{system}/{kind}"] = {"rss_per_conn": rss, "trace": traced}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
