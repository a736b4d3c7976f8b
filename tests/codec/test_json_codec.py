"""The JSON codec: mapping, limits, and errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bullet_py.codec import (
    Atom,
    BertCodec,
    Codec,
    DecodeLimits,
    JsonCodec,
    get_codec,
    proplist_to_dict,
)
from bullet_py.exceptions import DecodeError, EncodeError

codec = JsonCodec()


def reason(text: str, c: JsonCodec = codec) -> str:
    with pytest.raises(DecodeError) as info:
        c.decode(text)
    return info.value.reason


def test_stream_message_shape() -> None:
    msg = codec.decode('["sync", ["update", "character", {"id": 1, "name": "Zoë"}]]')
    assert msg == ("sync", ("update", "character", {"id": 1, "name": "Zoë"}))
    action, (method, model, props) = msg
    assert action == Atom("sync")  # atoms compare equal to their names
    assert (method, model) == ("update", "character")
    assert proplist_to_dict(props) == {"id": 1, "name": "Zoë"}


def test_scalars() -> None:
    assert codec.decode('[true, false, null, 1, -2.5, "x"]') == (True, False, None, 1, -2.5, "x")
    assert codec.decode('{"a": 1, "a": 2}') == {"a": 2}  # last key wins


def test_encode() -> None:
    reply = (Atom("sync"), Atom("ok"), {"id": 1, "tags": ("a", "b"), "x": [None, True, 1.5]})
    text = codec.encode(reply)
    assert text == '["sync","ok",{"id":1,"tags":["a","b"],"x":[null,true,1.5]}]'
    assert codec.decode(text) == (
        "sync",
        "ok",
        {"id": 1, "tags": ("a", "b"), "x": (None, True, 1.5)},
    )
    assert codec.encode("Zoë 😀") == '"Zoë 😀"'


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (float("nan"), "bad_float"),
        (float("inf"), "bad_float"),
        (2**60, "int_out_of_range"),
        ({1: 2}, "bad_key"),
        (b"bytes", "unsupported_type"),
        ({1, 2}, "unsupported_type"),
        (object(), "unsupported_type"),
    ],
)
def test_encode_errors(value: Any, why: str) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode(value)
    assert info.value.reason == why


def test_encode_depth_and_cycles() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(EncodeError) as info:
        codec.encode(loop)
    assert info.value.reason == "too_deep"


def test_lone_surrogates_become_replacement_chars() -> None:
    assert codec.decode('"a\\ud83d"') == "a\ufffd"
    assert codec.decode('"\\ud83d\\ude00"') == "😀"
    assert codec.decode('{"k\\udc00": 1}') == {"k\ufffd": 1}
    assert codec.encode("a\ud83d") == '"a\ufffd"'


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("  \n", "empty"),
        ("[1,", "bad_json"),
        ("{'a': 1}", "bad_json"),
        ("[1] [2]", "bad_json"),
        ("NaN", "bad_number"),
        ("[Infinity]", "bad_number"),
        ("-Infinity", "bad_number"),
        ("1e999", "bad_number"),
        ("1" * 200, "bignum_too_large"),
        ("[" * 101 + "]" * 101, "too_deep"),
        ("[" * 100_000 + "]" * 100_000, "too_deep"),
        ('{"a":' * 101 + "1" + "}" * 101, "too_deep"),
    ],
)
def test_decode_errors(text: str, why: str) -> None:
    assert reason(text) == why


def test_limits() -> None:
    small = JsonCodec(limits=DecodeLimits(max_length=10, max_elements=3, max_depth=2))
    assert reason("[" + " " * 20 + "]", small) == "too_large"
    assert reason("[1,2,3,4]", small) == "too_many_elements"
    assert small.decode("[[1],2]") == ((1,), 2)
    assert reason("[[[1]]]", small) == "too_deep"
    assert codec.decode("[" * 100 + "]" * 100) is not None


def test_decode_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        codec.decode(b"[]")  # type: ignore[arg-type]


def test_codec_protocol_and_registry() -> None:
    for name in ("bert", "bert2012", "json"):
        c = get_codec(name)
        assert isinstance(c, Codec)
        assert c.name == name
    assert isinstance(JsonCodec(), Codec)
    assert isinstance(BertCodec(), Codec)
    assert get_codec("bert2012").encode(True) == "\x83d\x00\x04true"
    with pytest.raises(ValueError):
        get_codec("xml")


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**53), max_value=2**53),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_round_trip(value: Any) -> None:
    assert codec.decode(codec.encode(value)) == value


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100))
def test_random_text_only_raises_decode_error(text: str) -> None:
    try:
        codec.decode(text)
    except DecodeError:
        pass
