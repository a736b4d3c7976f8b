"""Decoder fuzzing in CI (hypothesis), seeded with the BERT-JS vectors and the A-table.

The failure conditions of the fuzz target (the issue's wording): any exception
other than the codec's own ``DecodeError``; a decode that hangs; memory growth
over budget. In CI "hangs" means over 2 s for one input (twenty times the
100 ms budget, so a loaded machine never fails it by accident); the 100 ms
budget itself is enforced by the longer atheris run, ``bench/fuzz_decoder.py``,
and reported by ``bench/robustness.py``. Properties of the codec alone (round
trips, prefixes, single-unit mutations of generated terms) are in
tests/codec/test_bert_properties.py; these start from real client output.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bullet_py.codec.bert import decode, decode_bytes
from bullet_py.exceptions import DecodeError
from tests.robustness.harness import traced_growth

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
HANG = 2.0  # seconds for one decode: a hang, not a budget


def seeds() -> list[str]:
    """Every vector of both lines as the server receives it, plus structural oddities."""
    out = []
    for line in ("2012", "2016"):
        data = json.loads((VECTORS / f"bert-js-{line}.json").read_text(encoding="utf-8"))
        for v in data["vectors"]:
            text = "".join(map(chr, v["codepoints"]))
            out.append(text.encode("utf-16-le", "surrogatepass").decode("utf-16-le"))
    out += [
        "\x83l\x00\x00\x00\x02a\x01a\x02j",
        "\x83h\x02d\x00\x04syncl\x00\x00\x00\x01h\x02d\x00\x01ak\x00\x01xj",
        "\x83n\x08\x00" + "\xff" * 8,
        "\x83P\x00\x00\x00\x02x\x9c",
        "\x83t\x00\x00\x00\x00",
    ]
    return out


SEEDS = seeds()


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A seed with a few random edits: flips, inserts, deletes, splices, wide units."""
    text = list(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "splice", "wide", "cut", "repeat"]))
        pos = draw(st.integers(0, max(0, len(text) - 1)))
        if op == "flip" and text:
            text[pos] = chr(draw(st.integers(0, 255)))
        elif op == "insert":
            text.insert(pos, chr(draw(st.integers(0, 255))))
        elif op == "delete" and text:
            del text[pos]
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            text[pos:pos] = list(other[1:])
        elif op == "wide":
            text.insert(pos, chr(draw(st.sampled_from([0x100, 0x20AC, 0xFFFD, 0x1F600, 0xD83D]))))
        elif op == "cut":
            text = text[:pos]
        elif op == "repeat" and text:
            chunk = text[pos : pos + draw(st.integers(1, 8))]
            text[pos:pos] = chunk * draw(st.integers(1, 2000))
    return "".join(text)


def decode_once(text: str) -> Any:
    """Decode ``text``; the codec's own error is an answer, anything else a failure."""
    began = time.perf_counter()
    try:
        value = decode(text)
    except DecodeError as exc:
        assert exc.reason, "a DecodeError without a reason"
        value = exc
    assert time.perf_counter() - began < HANG, f"decode hung on {text[:40]!r}"
    return value


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_fuzz_mutated_vectors_only_ever_raise_decode_error(text: str) -> None:
    decode_once(text)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=4096))
def test_fuzz_raw_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    try:
        decode_bytes(b"\x83" + data)
    except DecodeError:
        pass


def test_fuzz_memory_stays_within_budget() -> None:
    """Every seed and 2,000 deterministic mutations: Python memory still held < 2 MB."""
    import random

    rng = random.Random(2026)
    inputs = list(SEEDS)
    for _ in range(2000):
        text = list(rng.choice(SEEDS))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(text) + 1)
            text.insert(pos, chr(rng.choice([rng.randrange(256), 0x20AC, 0x1F600])))
        inputs.append("".join(text))
    with traced_growth(2 << 20):
        for text in inputs:
            decode_once(text)
