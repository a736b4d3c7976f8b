"""Hostile and malformed input: docs/robustness.md groups A and B, at the codec level.

Inputs are written as in the checklist: hex code units separated by blanks;
a token above FF is a code point above 255 (``1F600`` is one astral char,
i.e. two UTF-16 units, as the browser delivers it).  No timing assertions:
"O(1) before allocating" is shown with tracemalloc peaks instead.
"""

from __future__ import annotations

import struct
import sys
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from bullet_py.codec import (
    Atom,
    DecodeLimits,
    decode,
    decode_bytes,
    dict_to_proplist,
    encode,
    encode_bytes,
    proplist_to_dict,
)
from bullet_py.exceptions import DecodeError, EncodeError

from .bertjs_reader import read_text, units_of


def h(spec: str) -> str:
    """Text from checklist notation: ``"83 6B 00 01 1F600"``."""
    return "".join(chr(int(tok, 16)) for tok in spec.split())


def reason(text: str, **kw: Any) -> str:
    with pytest.raises(DecodeError) as info:
        decode(text, **kw)
    return info.value.reason


def peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        try:
            fn()
        except DecodeError:
            pass
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# --- 1. empty ---------------------------------------------------------------


def test_1_empty_message() -> None:
    assert reason("") == "empty"
    with pytest.raises(DecodeError) as info:
        decode_bytes(b"")
    assert info.value.reason == "empty"


# --- 2. version ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "want"),
    [("82 61 01", "bad_version"), ("61 01", "bad_version"), ("83", "truncated")],
)
def test_2_version_byte(spec: str, want: str) -> None:
    assert reason(h(spec)) == want


# --- 3. every tag truncated at every offset ----------------------------------

VALID_BY_TAG = {
    97: "83 61 2A",
    98: "83 62 00 00 13 88",
    99: "83 63" + " 33 2E 35" + " 00" * 28,
    100: "83 64 00 05 68 65 6C 6C 6F",
    104: "83 68 02 61 01 61 02",
    105: "83 69 00 00 00 02 61 01 61 02",
    106: "83 6A",
    107: "83 6B 00 05 68 65 6C 6C 6F",
    108: "83 6C 00 00 00 02 61 01 61 02 6A",
    109: "83 6D 00 00 00 03 61 62 63",
    110: "83 6E 04 00 B1 68 DE 3A",
    111: "83 6F 00 00 00 04 01 B1 68 DE 3A",
    115: "83 73 03 61 62 63",
    70: "83 46 3F F8 00 00 00 00 00 00",
    118: "83 76 00 03 61 62 63",
    119: "83 77 03 61 62 63",
}


@pytest.mark.parametrize("tag", sorted(VALID_BY_TAG))
def test_3_every_prefix_of_every_tag_fails(tag: int) -> None:
    full = h(VALID_BY_TAG[tag])
    decode(full)  # the whole encoding is valid
    for cut in range(1, len(full)):
        assert reason(full[:cut]) in ("truncated", "length_exceeds_input"), cut


def test_3_prefixes_cut_inside_fixed_fields_are_truncated() -> None:
    for spec in ("83 62 00 00 13", "83 64 00", "83 6C 00 00", "83 63 33 2E", "83 46 3F F8"):
        assert reason(h(spec)) == "truncated"


def test_3_every_prefix_of_a_nested_message_fails() -> None:
    msg = encode((Atom("sync"), (Atom("update"), Atom("character"), {"id": 1, "name": "Zoë"})))
    for cut in range(1, len(msg)):
        assert reason(msg[:cut]) in ("truncated", "length_exceeds_input")


# --- 4. declared length far beyond the data ----------------------------------

LYING_LENGTHS = [
    "83 6D FF FF FF FF 61 62 63",
    "83 64 FF FF 61 62 63",
    "83 6B FF FF 61 62",
    "83 69 FF FF FF FF 6A",
    "83 6C FF FF FF FF 61 01",
    "83 6F FF FF FF FF 00 FF",
]


@pytest.mark.parametrize("spec", LYING_LENGTHS)
def test_4_length_exceeds_input_without_allocating(spec: str) -> None:
    text = h(spec)
    assert reason(text) == "length_exceeds_input"
    assert peak_bytes(lambda: decode(text)) < 1_000_000


def test_4_container_count_checked_against_remaining_units() -> None:
    # 3 elements + tail need at least 4 units; only 3 follow.
    assert reason(h("83 6C 00 00 00 03 61 01 6A")) == "length_exceeds_input"
    assert reason(h("83 68 03 61 01")) == "length_exceeds_input"


# --- 5 and 6. unknown and unsupported tags -----------------------------------


@pytest.mark.parametrize(
    ("spec", "tag"),
    [
        ("83 01", 1),
        ("83 4D 00 00 00 01 03 FF", 77),
        ("83 52 00", 82),
        ("83 58", 88),
        ("83 5A", 90),
        ("83 70 00 00 00 10", 112),
        ("83 71 64 00 01 6D 64 00 01 66 61 01", 113),
        ("83 74 00 00 00 00", 116),
        ("83 75 00 00 00 00", 117),
        ("83 50 00 00 00 05 78 9C 63 00 00", 80),
        # 6: pid, port, ref, new ref, export
        ("83 67 64 00 03 66 6F 6F 00 00 00 01 00 00 00 00 00", 103),
        ("83 66 64 00 03 66 6F 6F 00 00 00 01 00", 102),
        ("83 65 64 00 03 66 6F 6F 00 00 00 01 00", 101),
        ("83 72 00 01 64 00 03 66 6F 6F 00 00 00 00 01", 114),
        ("83 71 64 00 03 66 6F 6F 64 00 03 62 61 72 61 01", 113),
    ],
)
def test_5_6_unsupported_tags(spec: str, tag: int) -> None:
    assert reason(h(spec)) == f"unsupported_tag:{tag}"


def test_5_unsupported_tag_nested() -> None:
    assert reason(h("83 68 02 61 01 74 00 00 00 00")) == "unsupported_tag:116"


def test_5_utf8_atoms_are_accepted() -> None:
    assert decode(h("83 76 00 03 61 62 63")) == Atom("abc")
    assert type(decode(h("83 77 03 61 62 63"))) is Atom
    assert decode(bytes([131, 119, 2, 0xC5, 0x81]).decode("latin-1")) == Atom("Ł")
    assert reason(h("83 77 02 C5 41")) == "bad_term"  # invalid UTF-8
    assert reason("\x83\x76\x01\x00" + "a" * 256) == "atom_too_long"


# --- 7. nesting depth ---------------------------------------------------------


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_7_deep_tuples(levels: int) -> None:
    text = "\x83" + "\x68\x01" * levels + "\x6a"
    assert reason(text) == "too_deep"


@pytest.mark.parametrize("levels", [1_000, 100_000])
def test_7_deep_lists(levels: int) -> None:
    text = "\x83" + "\x6c\x00\x00\x00\x01" * levels + "\x6a" + "\x6a" * levels
    assert reason(text) == "too_deep"


def test_7_depth_limit_is_exact_and_recursion_limit_untouched() -> None:
    limit_before = sys.getrecursionlimit()
    ok = "\x83" + "\x68\x01" * 100 + "\x6a"
    value = decode(ok)
    for _ in range(100):
        assert type(value) is tuple
        (value,) = value
    assert value == []
    assert reason("\x83" + "\x68\x01" * 101 + "\x6a") == "too_deep"
    assert reason(ok, limits=DecodeLimits(max_depth=64)) == "too_deep"
    assert sys.getrecursionlimit() == limit_before


# --- 8 and 9. compressed terms are refused --------------------------------------


def _zlib_zeros(size: int) -> bytes:
    comp = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    out = [comp.compress(chunk) for _ in range(size >> 20)]
    out.append(comp.flush())
    return b"".join(out)


def test_8_compressed_bomb_refused_before_inflating() -> None:
    inner_body = b"\x6d\x40\x00\x00\x00" + _zlib_zeros(16 << 20)
    inner = b"\x50" + struct.pack(">I", len(inner_body)) + zlib.compress(inner_body, 9)
    bomb = b"\x83\x50" + struct.pack(">I", 1 << 30) + zlib.compress(inner, 9)
    text = bomb.decode("latin-1")
    assert reason(text) == "unsupported_tag:80"
    assert peak_bytes(lambda: decode(text)) < 10 * len(text) + 1_000_000


@pytest.mark.parametrize(
    "data",
    [
        b"\x83\x50\x00\x00\x00\x05" + zlib.compress(b"\x6b\x00\x10" + b"a" * 16),
        b"\x83\x50\x40\x00\x00\x00" + zlib.compress(b"\x61\x01"),
        b"\x83\x50\x00\x00\x00\x10garbage",
        b"\x83\x50\x00\x00\x00\x02" + zlib.compress(b"\x61\x01") + b"trailing",
        b"\x83\x68\x01\x50\x00\x00\x00\x02" + zlib.compress(b"\x61\x01"),
    ],
)
def test_9_compressed_with_lies(data: bytes) -> None:
    assert reason(data.decode("latin-1")) == "unsupported_tag:80"


# --- 10. improper lists ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("83 6C 00 00 00 01 61 01 61 02", "improper_list"),
        ("83 6C 00 00 00 01 61 01", "truncated"),
        ("83 6C 00 00 00 01 61 01 68 00", "improper_list"),
        ("83 6C 00 00 00 00 61 01", "improper_list"),
        ("83 68 01 6C 00 00 00 01 61 01 6B 00 00", "improper_list"),
    ],
)
def test_10_improper_lists(spec: str, want: str) -> None:
    assert reason(h(spec)) == want


# --- 11. trailing data ---------------------------------------------------------------


def test_11_trailing_garbage() -> None:
    assert reason(h("83 61 01 47 41 52 42 41 47 45")) == "trailing_data"
    assert reason(h("83 6A 6A")) == "trailing_data"


# --- 12. CPU bomb: bignums ----------------------------------------------------------


def test_12_bignum_bomb() -> None:
    text = h("83 6F 00 03 0D 40 00") + "\xff" * 200_000
    assert reason(text) == "bignum_too_large"


def test_12_bignum_bomb_at_the_size_limit() -> None:
    limit = DecodeLimits().max_length
    digits = limit - 7
    text = "\x83\x6f" + struct.pack(">I", digits).decode("latin-1") + "\x00" + "\xff" * digits
    assert len(text) == limit
    assert reason(text) == "bignum_too_large"
    assert reason(text + "\xff") == "too_large"


def test_12_bignum_limit_is_exact() -> None:
    ok = "\x83\x6e\x40\x00" + "\xff" * 64
    assert decode(ok) == 2 ** (64 * 8) - 1
    assert reason("\x83\x6e\x41\x00" + "\xff" * 65) == "bignum_too_large"
    assert reason("\x83\x6e\x01\x02\x01") == "bad_term"  # sign must be 0 or 1


# --- 13. amplification ------------------------------------------------------------------


def test_13_million_nils() -> None:
    text = h("83 6C 00 0F 42 40") + "\x6a" * 1_000_000 + "\x6a"
    assert reason(text) == "too_many_elements"
    assert peak_bytes(lambda: decode(text)) < 10 * len(text)


def test_13_many_empty_maps() -> None:
    text = "\x83\x6c" + struct.pack(">I", 200_000).decode("latin-1") + "\x74\0\0\0\0" * 200_000
    assert reason(text + "\x6a") == "too_many_elements"
    small = "\x83\x6c\x00\x00\x00\x02" + "\x74\0\0\0\0" * 2 + "\x6a"
    assert reason(small) == "unsupported_tag:116"


def test_13_element_budget_counts_every_container() -> None:
    # 300 tuples of 2 small ints: 300 + 600 elements.
    text = "\x83\x6c\x00\x00\x01\x2c" + "\x68\x02\x61\x01\x61\x02" * 300 + "\x6a"
    assert len(decode(text)) == 300
    assert reason(text, limits=DecodeLimits(max_elements=899)) == "too_many_elements"
    assert len(decode(text, limits=DecodeLimits(max_elements=900))) == 300


# --- 14. odd floats ------------------------------------------------------------------------


def float_ext(text: bytes) -> str:
    assert len(text) <= 31
    return "\x83\x63" + text.ljust(31, b"\x00").decode("latin-1")


@pytest.mark.parametrize(
    "text",
    [b"nan", b"NaN", b"inf", b"-inf", b"infinity", b"1e999", b"-1e999", b"1_0", b"  1", b"1 ",
     b"0x10", b"", b"1.5e", b"e5", b"1..5", b"\t1"],
)  # fmt: skip
def test_14_bad_float_text(text: bytes) -> None:
    assert reason(float_ext(text)) == "bad_float"


def test_14_float_padding_must_be_nul() -> None:
    assert reason("\x83\x63" + "1.5\x00x" + "\x00" * 26) == "bad_float"


def test_14_finite_floats_decode_exactly() -> None:
    assert decode(float_ext(b"3.14158999999999988262e+00")) == 3.14159
    assert decode(float_ext(b"3.14159e+0")) == 3.14159  # the 2012 line's text
    assert decode(float_ext(b"-5e-1")) == -0.5
    assert decode(float_ext(b"1e-999")) == 0.0  # underflow is still finite
    digits31 = b"1" * 31  # no NUL at all: a legal (if odd) %lf text
    assert decode("\x83\x63" + digits31.decode()) == float(digits31)


NON_FINITE_BITS = ["7F F8 00 00 00 00 00 00", "7F F0 00 00 00 00 00 00",
                   "FF F0 00 00 00 00 00 00", "FF FF FF FF FF FF FF FF"]  # fmt: skip


@pytest.mark.parametrize("bits", NON_FINITE_BITS)
def test_14_new_float_non_finite(bits: str) -> None:
    assert reason(h("83 46 " + bits)) == "bad_float"


def test_14_new_float_finite() -> None:
    assert decode(h("83 46 3F F8 00 00 00 00 00 00")) == 1.5


# --- 15. maps ------------------------------------------------------------------------------------


def test_15_map_with_list_key() -> None:
    assert reason(h("83 74 00 00 00 01 6C 00 00 00 01 61 01 6A 61 02")) == "unsupported_tag:116"


# --- 16. atoms ------------------------------------------------------------


def atom_ext(name: str) -> str:
    return "\x83\x64\x00" + chr(len(name)) + name


def test_16_atom_lengths() -> None:
    assert decode(h("83 64 00 00")) == Atom("")
    assert type(decode(h("83 64 00 00"))) is Atom
    assert reason(h("83 64 01 00") + "a" * 256) == "atom_too_long"
    assert decode("\x83\x64\x00\xff" + "a" * 255) == Atom("a" * 255)
    assert decode(atom_ext("a\x00b")) == Atom("a\x00b")


def test_16_special_atom_names() -> None:
    assert decode(atom_ext("null")) is None
    assert decode(atom_ext("true")) is True
    assert decode(atom_ext("false")) is False
    none = decode(atom_ext("none"))
    assert type(none) is Atom
    assert none == "none"
    bert = decode(atom_ext("bert"))
    assert type(bert) is Atom
    assert bert == "bert"


def test_16_bert_tuples() -> None:
    bert = "\x64\x00\x04bert"
    assert decode("\x83\x68\x02" + bert + "\x64\x00\x04true") is True
    assert decode("\x83\x68\x02" + bert + "\x64\x00\x05false") is False
    assert decode("\x83\x68\x02" + bert + "\x64\x00\x03nil") == []
    assert decode("\x83\x68\x02" + bert + "\x64\x00\x03foo") == (Atom("bert"), Atom("foo"))
    # a *string* "bert" is not the atom
    assert decode("\x83\x68\x02\x6b\x00\x04bert\x64\x00\x04true") == ("bert", True)
    # SMALL_ATOM_EXT spelling works too
    assert decode("\x83\x68\x02\x73\x04bert\x73\x04true") is True


def test_16_atoms_are_never_identifiers() -> None:
    value = decode(atom_ext("__class__"))
    assert type(value) is Atom
    assert value == "__class__"


# --- 17. right BERT, wrong shape: the proplist helper -------------------------------------------


def test_17_shapes_decode_as_plain_values() -> None:
    assert decode(h("83 61 01")) == 1
    assert decode(encode((Atom("sync"),))) == (Atom("sync"),)
    assert decode(encode((Atom("sync"), 1))) == (Atom("sync"), 1)


def test_17_proplist_to_dict() -> None:
    pl = decode(encode([(Atom("id"), 1), (Atom("name"), "Zoë"), (Atom("id"), 2)]))
    assert proplist_to_dict(pl) == {"id": 2, "name": "Zoë"}
    assert proplist_to_dict(pl, duplicates="first") == {"id": 1, "name": "Zoë"}
    with pytest.raises(DecodeError) as info:
        proplist_to_dict(pl, duplicates="error")
    assert info.value.reason == "duplicate_key"
    assert proplist_to_dict([("id", 1)]) == {"id": 1}
    assert all(type(k) is str for k in proplist_to_dict(pl))
    assert proplist_to_dict([(True, 1), (None, 2)]) == {"true": 1, "null": 2}
    assert proplist_to_dict({"a": 1}) == {"a": 1}


@pytest.mark.parametrize(
    "bad",
    [[1], [(Atom("a"), 1, 2)], [(b"key", 1)], [(1, 2)], [(Atom("a"),)], Atom("not_a_list"), 5],
)
def test_17_bad_proplists(bad: Any) -> None:
    with pytest.raises(DecodeError) as info:
        proplist_to_dict(bad)
    assert info.value.reason == "bad_proplist"


def test_17_dict_to_proplist() -> None:
    assert dict_to_proplist({"a": 1, "b": 2}) == [(Atom("a"), 1), (Atom("b"), 2)]
    assert all(type(k) is Atom for k, _ in dict_to_proplist({"a": 1}))
    with pytest.raises(EncodeError):
        dict_to_proplist({1: 2})  # type: ignore[dict-item]


# --- 19. code points above 255 inside payloads -------------------------------------------------


def test_19_non_latin1_string_atom_binary() -> None:
    assert decode(h("83 6B 00 08 141 75 6B 61 73 7A 20 20AC")) == "Łukasz €"
    as_atom = decode(h("83 64 00 08 141 75 6B 61 73 7A 20 20AC"))
    assert type(as_atom) is Atom
    assert as_atom == "Łukasz €"
    assert decode(h("83 73 08 141 75 6B 61 73 7A 20 20AC")) == Atom("Łukasz €")
    # Bert.binary("Łukasz €"): text, not bytes (documented)
    assert decode(h("83 6D 00 00 00 08 141 75 6B 61 73 7A 20 20AC")) == "Łukasz €"
    # a binary of bytes in the same (wide) message stays bytes
    mixed = h("83 68 02 6D 00 00 00 02 61 FF 6B 00 01 141")
    assert decode(mixed) == (b"a\xff", "Ł")


def test_19_reply_with_text_comes_back_unchanged_through_bertjs() -> None:
    for text in ("Łukasz €", "Zoë 😀", "日本語", "a\r\nb\x00c"):
        out = encode((Atom("sync"), Atom("ok"), [(Atom("name"), text)]))
        page = read_text(out)
        assert (
            "".join(page[2][0][1]).encode("utf-16-le", "surrogatepass").decode("utf-16-le") == text
        )
        assert decode(out) == (Atom("sync"), Atom("ok"), [(Atom("name"), text)])


# --- 20. code points above 255 in structural positions ----------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "83 100 01",
        "83 6B 20AC 01 61",
        "183 61 01",
        "83 61 100",
        "83 68 100 61 01",
        "83 6C 00 00 100 01 61 01 6A",
        "83 62 00 00 100 00",
        "83 6E 01 00 100",
        "83 6E 01 100 05",
        "83 6E 100 00 05",
        "83 6F 00 00 00 01 00 100",
        "83 6C 00 00 00 01 61 01 16A",
        "83 6C 00 00 00 00 16A",
        "83 6D 00 00 00 20AC 61",
        "83 73 100 61",
        "83 64 00 100 61",
        "83 63 33 2E 35 100" + " 00" * 27,
        "83 46 3F F8 00 00 00 00 00 100",
        "83 77 02 100 61",
        "83 76 00 02 61 100",
        "83 1F600",
        "1F600 61 01",
    ],
)
def test_20_wide_units_in_structure(spec: str) -> None:
    assert reason(h(spec)) == "bad_term"


# --- 21 and 22. astral chars and lone surrogates ----------------------------------------------


def test_21_astral_lengths_count_utf16_units() -> None:
    assert decode(h("83 6B 00 02 1F600")) == "😀"
    assert decode(h("83 6B 00 03 1F600 61")) == "😀a"
    assert decode(h("83 68 02 6B 00 02 1F600 61 05")) == ("😀", 5)
    assert decode(h("83 64 00 02 1F600")) == Atom("😀")
    assert decode(h("83 6D 00 00 00 02 1F600")) == "😀"
    # length 1 cuts the pair: the low surrogate lands on a tag position
    assert reason(h("83 68 02 6B 00 01 1F600 61 01")) == "bad_term"
    assert reason(h("83 6B 00 01 1F600")) == "trailing_data"
    # length 3 with nothing after the pair
    assert reason(h("83 6B 00 03 1F600")) == "length_exceeds_input"


def test_21_astral_output_lengths() -> None:
    out = encode("Zoë 😀")
    assert units_of(out) == [131, 107, 0, 6, 90, 111, 235, 32, 0xD83D, 0xDE00]
    assert out.endswith("😀")  # one code point: one 4-byte UTF-8 char on the wire
    wire = out.encode("utf-8")
    assert wire.endswith(b" \xf0\x9f\x98\x80")
    assert len(wire) == 5 + 2 + 2 + 1 + 4  # 0x83 takes 2 bytes, as does ë


def test_22_lone_surrogate_arrives_as_replacement_char() -> None:
    assert decode(h("83 6B 00 01 FFFD")) == "\ufffd"
    # if a lone surrogate reaches decode() anyway, it is read as U+FFFD
    assert decode("\x83\x6b\x00\x02\ud83da") == "\ufffda"
    assert decode("\x83\x6b\x00\x02\ud83d\ude00") == "😀"  # an unpaired pair is recombined


def test_22_lone_surrogate_in_reply_becomes_replacement_char() -> None:
    out = encode("a\ud83d")
    assert out == "\x83\x6b\x00\x02a\ufffd"
    out.encode("utf-8")  # sendable
    assert encode("\ud83d\ude00") == encode("😀")


# --- 28. the size limit is in BERT units ---------------------------------------------------------


def test_28_size_limit_counts_units_not_bytes() -> None:
    limits = DecodeLimits(max_length=1000)
    payload = "é" * (1000 - 4)  # 2 bytes each in UTF-8
    text = "\x83\x6b" + chr((len(payload) >> 8) & 255) + chr(len(payload) & 255) + payload
    assert len(text) == 1000
    assert len(text.encode("utf-8")) > 1900
    assert decode(text, limits=limits) == payload
    assert reason(text + "\x6a", limits=limits) == "too_large"


def test_28_astral_chars_count_twice_against_the_limit() -> None:
    limits = DecodeLimits(max_length=10)
    text = encode("😀" * 3)  # 4 + 6 units, 7 code points
    assert decode(text, limits=limits) == "😀" * 3
    assert reason(encode("😀" * 4), limits=limits) == "too_large"


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        DecodeLimits(max_depth=0)
    with pytest.raises(ValueError):
        DecodeLimits(max_length=True)


# --- 35. replies a page cannot read ----------------------------------------


class _Cyclic(list[Any]):
    pass


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({1, 2}, "unsupported_type"),
        (object(), "unsupported_type"),
        (float("nan"), "bad_float"),
        (float("inf"), "bad_float"),
        ([1, -float("inf")], "bad_float"),
        (2**70, "int_out_of_range"),
        (-(2**53) - 1, "int_out_of_range"),
        ({1: "x"}, "bad_key"),
        ({"ok": {(1, 2): 3}}, "bad_key"),
        (Atom("a" * 256), "atom_too_long"),
        (Atom("😀" * 128), "atom_too_long"),
        (1j, "unsupported_type"),
    ],
)
def test_35_unencodable_replies(value: Any, why: str) -> None:
    with pytest.raises(EncodeError) as info:
        encode(value)
    assert info.value.reason == why


def test_35_cycles_and_depth_end_in_too_deep() -> None:
    loop: list[Any] = []
    loop.append(loop)
    for value in (loop, _deep_list(101), {"a": _deep_list(99)}):
        with pytest.raises(EncodeError) as info:
            encode(value)
        assert info.value.reason == "too_deep"
    nested = _deep_list(100)
    assert decode(encode(nested)) == nested
    with pytest.raises(EncodeError):
        encode(_deep_list(100, leaf=True))  # {bert,true} is one more level in 2016
    encode(_deep_list(100, leaf=True), booleans="2012")


def _deep_list(levels: int, *, leaf: Any = 1) -> list[Any]:
    value: Any = leaf
    for _ in range(levels):
        value = [value]
    return value  # type: ignore[no-any-return]


def test_35_big_ints_need_opt_in() -> None:
    assert decode(encode(2**53)) == 2**53
    assert decode(encode(-(2**53))) == -(2**53)
    out = encode(2**70, big_ints=True)
    assert out[1] == "n"
    assert decode(out) == 2**70
    with pytest.raises(EncodeError) as info:
        encode(2 ** (8 * 255), big_ints=True)
    assert info.value.reason == "int_out_of_range"
    assert decode(encode(2 ** (8 * 64) - 1, big_ints=True)) == 2 ** (8 * 64) - 1


def test_35_integer_forms_match_bertjs() -> None:
    assert encode(255)[1] == "a"
    assert encode(256)[1] == "b"
    assert encode(2**27 - 1)[1] == "b"
    assert encode(-(2**27))[1] == "b"
    assert encode(2**27)[1] == "n"
    assert encode(-(2**27) - 1)[1] == "n"
    # the range BERT-JS misreads as 98 (first byte 0x80) never goes out as 98
    for v in (-(2**31), -(2**31) + 2**24 - 1):
        assert encode(v)[1] == "n"
        assert decode(encode(v)) == v
        read_text(encode(v))


def test_35_long_text_goes_out_as_binary() -> None:
    assert encode("x" * 33023)[1] == "k"
    long = encode("x" * 33024)
    assert long[1] == "m"
    assert decode(long) == b"x" * 33024  # a Latin-1 binary reads back as bytes
    wide = encode("Ł" * 40000)
    assert wide[1] == "m"
    assert decode(wide) == "Ł" * 40000
    read_text(long)
    read_text(wide)


def test_35_only_readable_tags_go_out() -> None:
    value = (Atom("sync"), Atom("ok"), {"a": [1.5, -(2**40), b"\x00\xff", None, True, ()]})
    read_text(encode(value))
    tags = {units_of(encode(v))[1] for v in (1, 300, 2**40, 1.5, "s", b"b", (), (1,), [1], [])}
    assert tags <= {97, 98, 110, 99, 107, 109, 104, 105, 106, 108, 100}


def test_large_tuples() -> None:
    big = tuple(range(300))
    out = encode(big)
    assert out[1] == "i"
    assert decode(out) == big
    read_text(out)
    assert reason("\x83\x69\x00\x00\x00\x00\x6a") == "trailing_data"
    assert decode("\x83\x69\x00\x00\x00\x00") == ()


def test_2012_form() -> None:
    assert encode(True, booleans="2012") == "\x83d\x00\x04true"
    assert encode([], booleans="2012") == "\x83j"
    assert encode({}, booleans="2012") == "\x83j"
    assert encode({}) == encode([])
    with pytest.raises(ValueError):
        encode(1, booleans="2020")  # type: ignore[arg-type]


def test_encode_bytes_and_subclasses() -> None:
    import enum
    from collections import namedtuple

    class Color(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    point = namedtuple("point", "x y")
    assert encode_bytes((Color.RED, Name("x"), point(1, 2))) == encode_bytes((1, "x", (1, 2)))
    assert encode_bytes(bytearray(b"ab")) == b"\x83m\x00\x00\x00\x02ab"
    assert encode(memoryview(b"ab")) == encode(b"ab")
    assert encode(_Cyclic([1])) == encode([1])
    assert decode_bytes(encode_bytes("Zoë")) == "Zoë"
    with pytest.raises(EncodeError) as info:
        encode_bytes("Ł")
    assert info.value.reason == "not_latin1"


def test_decode_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        decode(b"\x83\x61\x01")  # type: ignore[arg-type]


def test_20_many_runs_of_wide_units() -> None:
    """Mixed text takes the other structural-view branch; same results."""
    mixed = "aŁ" * 100
    assert decode(encode(mixed)) == mixed
    assert decode(encode((mixed, Atom("Ł" + "b" * 40), 7))) == (mixed, Atom("Ł" + "b" * 40), 7)
    assert reason("\x83\x68\x02" + encode(mixed)[1:] + "\u0141") == "bad_term"
    assert reason(encode(mixed) + "\u0141") == "trailing_data"
    assert reason(encode((mixed, 1))[:-1] + "\u0101") == "bad_term"
    assert decode("\x83\x6d\x00\x00\x00\x04a\u0141b\u0142") == "aŁbł"


def test_empty_list_ext_and_large_tuple_nesting() -> None:
    assert decode(h("83 6C 00 00 00 00 6A")) == []
    nested = "\x83" + "\x69\x00\x00\x00\x01" * 100 + "\x6a"
    value = decode(nested)
    for _ in range(100):
        (value,) = value
    assert value == []
    assert reason("\x83" + "\x69\x00\x00\x00\x01" * 101 + "\x6a") == "too_deep"
    two = "\x83\x69\x00\x00\x00\x02\x61\x01\x61\x02"
    assert decode(two) == (1, 2)
    assert reason(two, limits=DecodeLimits(max_elements=1)) == "too_many_elements"


def test_encode_depth_limits_per_container_kind() -> None:
    deep_tuple: Any = 1
    deep_dict: Any = 1
    for _ in range(101):
        deep_tuple = (deep_tuple,)
    for _ in range(51):  # 2 levels each (the list and the {Key, Value} tuple)
        deep_dict = {"k": deep_dict}
    for value in (deep_tuple, deep_dict, _deep_list(100, leaf=[])):
        with pytest.raises(EncodeError) as info:
            encode(value)
        assert info.value.reason == "too_deep"
    assert decode(encode(deep_tuple[0])) == deep_tuple[0]
    shallow: Any = 1
    for _ in range(50):
        shallow = {"k": shallow}
    assert list(proplist_to_dict(decode(encode(shallow)))) == ["k"]  # 100 levels


def test_float_ties_round_like_javascript() -> None:
    # 2**-31 has exactly 22 significant digits, the last a 5: JS's
    # toExponential(20) rounds up where C's %.20e rounds to even.
    assert f"{2**-31:.20e}" == "4.65661287307739257812e-10"
    for x, text in (
        (2**-31, "4.65661287307739257813e-10"),
        (-(2**-31), "-4.65661287307739257813e-10"),
    ):
        out = encode(x)
        assert out == "\x83c" + text + "\x00" * (31 - len(text))
        assert decode(out) == x
    assert encode(0.1) == "\x83c1.00000000000000005551e-01" + "\x00" * 5


def test_subclass_inputs() -> None:
    import types

    class MyAtom(Atom):
        pass

    class MyFloat(float):
        pass

    class MyStr(str):
        pass

    assert encode(MyAtom("ok")) == encode(Atom("ok"))
    assert encode(MyFloat(1.5)) == encode(1.5)
    assert encode(types.MappingProxyType({"a": 1})) == encode({"a": 1})
    assert decode(MyStr("\x83\x61\x01")) == 1


def test_reprs_and_helpers() -> None:
    from bullet_py.codec import BertCodec, JsonCodec, atom

    assert repr(BertCodec(booleans="2012")) == "BertCodec(booleans='2012')"
    assert repr(JsonCodec()) == "JsonCodec()"
    assert type(atom("x")) is Atom
    assert BertCodec(max_depth=3).encode([[[1]]]) == encode([[[1]]])
    with pytest.raises(EncodeError):
        BertCodec(max_depth=2).encode([[[1]]])
