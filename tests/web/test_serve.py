"""The runner's start-up freeze: garbage collected first, the rest out of later collections.

``run()`` owns its process, so it freezes what start-up made by default; the
coroutine ``serve()`` (which may share a process with other code, as in
these tests) does it only when asked.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import textwrap
import weakref
from pathlib import Path

import aiohttp

from bullet_py.web.serve import freeze_startup_objects
from tests.processes import free_port


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_startup_garbage_is_collected_then_the_rest_is_frozen() -> None:
    first, second = _Node(), _Node()
    first.other, second.other = second, first  # a cycle: only the collector frees it
    gone = weakref.ref(first)
    kept = _Node()
    del first, second
    try:
        freeze_startup_objects()
        assert gone() is None  # collected, not frozen
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(kept)
    finally:
        gc.unfreeze()


_SERVER = textwrap.dedent(
    """
    import gc, sys
    from aiohttp import web
    from bullet_py.web.serve import run

    async def frozen(request):
        return web.Response(text=str(gc.get_freeze_count()))

    app = web.Application()
    app.router.add_get("/frozen", frozen)
    kwargs = {} if sys.argv[2] == "default" else {"freeze_startup": False}
    run(app, "127.0.0.1", int(sys.argv[1]), **kwargs)
    """
)


async def _frozen_count(tmp_path: Path, mode: str) -> int:
    script = tmp_path / "server.py"
    script.write_text(_SERVER)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(port),
        mode,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.decode().startswith("listening on"), line
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/frozen") as resp:
                return int(await resp.text())
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 20)


async def test_run_freezes_what_start_up_made_by_default(tmp_path: Path) -> None:
    assert await _frozen_count(tmp_path, "default") > 1000  # modules, the app, the loop


async def test_run_leaves_the_collector_alone_when_asked(tmp_path: Path) -> None:
    assert await _frozen_count(tmp_path, "off") == 0
