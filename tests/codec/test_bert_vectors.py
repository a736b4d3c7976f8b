"""Every BERT-JS vector, both release lines: decode, and encode back (docs/robustness.md item 18).

The vectors hold what ``Bert.encode`` returned, as UTF-16 code units.  The
server receives that string after a UTF-8 trip, where a surrogate pair has
become one astral code point: ``received()`` builds exactly that ``str``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bullet_py.codec import Atom, BertCodec, decode, decode_bytes, encode, get_codec

from .bertjs_reader import read, units_of

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load(line: str) -> list[dict[str, Any]]:
    with (VECTORS / f"bert-js-{line}.json").open(encoding="utf-8") as f:
        vectors: list[dict[str, Any]] = json.load(f)["vectors"]
    return vectors


V2016 = load("2016")
V2012 = load("2012")
ALL = [pytest.param("2016", v, id=f"2016-{v['name']}") for v in V2016] + [
    pytest.param("2012", v, id=f"2012-{v['name']}") for v in V2012
]


def received(codepoints: list[int]) -> str:
    """The message as the server gets it: code units joined, pairs recombined."""
    text = "".join(map(chr, codepoints))
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")


def expected(js: Any) -> Any:
    """The documented Python value for a vector's ``js_decode`` JSON."""
    if isinstance(js, dict):
        if "atom" in js:
            name = js["atom"]
            if name is True or name is False:  # 2012: the atom true/false
                return name
            if name in ("true", "false"):
                return name == "true"
            if name == "null":
                return None
            return Atom(name)
        if "binary" in js:
            text = js["binary"]
            return text.encode("latin-1") if max(text, default="\0") <= "\xff" else text
        if "tuple" in js:
            return tuple(expected(x) for x in js["tuple"])
        raise AssertionError(f"unknown notation {js!r}")
    if isinstance(js, list):
        return [expected(x) for x in js]
    return js


def same(a: Any, b: Any) -> bool:
    """Equal *and* of the same Python types all the way down (Atom is not str)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_both_lines_present() -> None:
    assert len(V2016) >= 30
    assert [v["name"] for v in V2016] == [v["name"] for v in V2012]


@pytest.mark.parametrize(("line", "vector"), ALL)
def test_decodes_to_documented_value(line: str, vector: dict[str, Any]) -> None:
    value = decode(received(vector["codepoints"]))
    want = expected(vector["js_decode"])
    assert same(value, want), (value, want)


@pytest.mark.parametrize(("line", "vector"), ALL)
def test_codecs_read_both_lines(line: str, vector: dict[str, Any]) -> None:
    text = received(vector["codepoints"])
    want = expected(vector["js_decode"])
    for codec in (BertCodec(), BertCodec(booleans="2012"), get_codec("bert")):
        assert same(codec.decode(text), want)


# Vectors holding units above 255 exist only as text, never as raw bytes.
BYTE_VECTORS = [p for p in ALL if max(p.values[1]["codepoints"]) <= 255]


@pytest.mark.parametrize(("line", "vector"), BYTE_VECTORS)
def test_decode_bytes_reads_byte_vectors(line: str, vector: dict[str, Any]) -> None:
    value = decode_bytes(bytes(vector["codepoints"]))
    assert same(value, expected(vector["js_decode"]))


@pytest.mark.parametrize("vector", V2016, ids=[v["name"] for v in V2016])
def test_encode_reproduces_2016_output(vector: dict[str, Any]) -> None:
    value = expected(vector["js_decode"])
    out = encode(value)
    assert units_of(out) == vector["codepoints"]
    assert units_of(BertCodec().encode(value)) == vector["codepoints"]


@pytest.mark.parametrize("vector", V2016, ids=[v["name"] for v in V2016])
def test_decode_encode_round_trip_is_identity_on_2016_text(vector: dict[str, Any]) -> None:
    text = received(vector["codepoints"])
    assert encode(decode(text)) == text


@pytest.mark.parametrize("vector", V2012, ids=[v["name"] for v in V2012])
def test_encode_2012_form(vector: dict[str, Any]) -> None:
    """With booleans="2012", output equals the 2012 line except float text.

    BERT-JS 2012 writes floats as JS's shortest text ("3.14159e+0"); the codec
    always writes the exact 21-digit form, which both lines parse to the same
    double.
    """
    value = expected(vector["js_decode"])
    out = encode(value, booleans="2012")
    if vector["name"].startswith("float"):
        assert decode(out) == value
        assert out[1] == "c"
    else:
        assert units_of(out) == vector["codepoints"]


@pytest.mark.parametrize("vector", V2016, ids=[v["name"] for v in V2016])
def test_output_is_readable_by_bertjs(vector: dict[str, Any]) -> None:
    read(units_of(encode(expected(vector["js_decode"]))))


def test_vector_units_over_255_are_decoded_as_text() -> None:
    by_name = {v["name"]: v for v in V2016}
    assert decode(received(by_name["non-latin1 string"]["codepoints"])) == "Łukasz €"
    emoji = decode(received(by_name["astral (emoji) string"]["codepoints"]))
    assert emoji == "Zoë 😀"
    assert len(units_of(emoji)) == 6
