"""Coverage-guided fuzzing of the BERT decoder and the Stream router with atheris.

    python bench/fuzz_decoder.py -max_total_time=600 /tmp/bert-corpus

Runs for as long as libFuzzer is told (CI runs the hypothesis version in
tests/robustness/test_fuzz_decoder.py instead). The corpus directory is seeded
with every BERT-JS vector of both lines on the first run. A failure is:

- any exception other than the codec's own ``DecodeError`` (decoder), or any
  exception at all from the router's dispatch (it must answer every input);
- one input taking over 100 ms (``BULLET_FUZZ_BUDGET_MS`` to change it);
- the process's peak RSS growing more than 200 MB (``BULLET_FUZZ_RSS_MB``).

Each input is fed twice: as text (what a WebSocket frame or a POST body
gives the server, units above 255 included) and as raw bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from bullet_py.codec import bert
    from bullet_py.exceptions import DecodeError

from bullet_py import Connection, Options, Transport
from bullet_py.hub import Hub
from bullet_py.registry import Registry
from bullet_py.router import Router, ok

ROOT = Path(__file__).resolve().parent.parent
BUDGET = float(os.environ.get("BULLET_FUZZ_BUDGET_MS", "100")) / 1000
RSS_BUDGET_KB = int(os.environ.get("BULLET_FUZZ_RSS_MB", "200")) * 1024


def seed(corpus: Path) -> None:
    """Write the vectors into ``corpus`` (as UTF-8, the way they arrive)."""
    corpus.mkdir(parents=True, exist_ok=True)
    for line in ("2012", "2016"):
        data = json.loads((ROOT / "tests" / "vectors" / f"bert-js-{line}.json").read_text())
        for i, v in enumerate(data["vectors"]):
            text = "".join(map(chr, v["codepoints"]))
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
            (corpus / f"v{line}-{i:03d}").write_bytes(text.encode("utf-8", "surrogatepass"))


class _Model:
    def read(self, ctx: object, props: object) -> object:
        return ok({"name": "x"})


_loop = asyncio.new_event_loop()
_options = Options()
_registry = Registry(_options)
_hub = Hub(_registry)
_router = Router(timeout=None)
_router.model("character", _Model())


async def _make_conn() -> Connection:
    conn = Connection(
        session_id="fuzz",
        transport=Transport.WEBSOCKET,
        handler=_router(),
        registry=_registry,
        options=_options,
        hub=_hub,
    )
    await conn.open()
    return conn


_conn = _loop.run_until_complete(_make_conn())
_baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _timed(fn: object, *args: object) -> None:
    began = time.perf_counter()
    try:
        fn(*args)  # type: ignore[operator]
    except DecodeError:
        pass
    spent = time.perf_counter() - began
    if spent > BUDGET:
        raise RuntimeError(f"decode took {spent * 1000:.1f} ms > {BUDGET * 1000:.0f} ms")


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    _timed(bert.decode, text)
    _timed(bert.decode_bytes, data)
    reply = _loop.run_until_complete(_conn.handle_message(text))  # never raises
    assert reply is None or isinstance(reply, str)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if rss - _baseline_rss > RSS_BUDGET_KB:
        raise MemoryError(f"peak RSS grew {(rss - _baseline_rss) // 1024} MB")


def main() -> None:
    corpora = [a for a in sys.argv[1:] if not a.startswith("-")]
    for corpus in corpora:
        if not any(Path(corpus).glob("*")):
            seed(Path(corpus))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
