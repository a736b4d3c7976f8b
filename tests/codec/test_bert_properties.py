"""Properties of the BERT codec over generated values and hostile text."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bullet_py.codec import JS_SAFE_INTEGER, Atom, decode, decode_bytes, encode
from bullet_py.exceptions import DecodeError

from .bertjs_reader import js_view, read, units_of

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Text as users type it: any code point except surrogates (hypothesis' default
# alphabet), so non-Latin-1 and astral chars are included.
text = st.text(max_size=20)
atoms = st.builds(Atom, st.text(max_size=12))
safe_ints = st.integers(min_value=-JS_SAFE_INTEGER, max_value=JS_SAFE_INTEGER)
edge_ints = st.sampled_from(
    [0, 255, 256, -1, 2**27 - 1, -(2**27), 2**27, -(2**27) - 1, 2**31 - 1, -(2**31),
     -(2**31) + 2**24 - 1, 2**32, JS_SAFE_INTEGER, -JS_SAFE_INTEGER]
)  # fmt: skip
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(
    atoms,
    st.booleans(),
    st.none(),
    text,
    st.binary(max_size=20),
    safe_ints,
    edge_ints,
    floats,
)


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5).map(tuple),
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    )


values = st.recursive(scalars, _extend, max_leaves=25)


def expected(v: Any) -> Any:
    """The Python value ``decode(encode(v))`` must give (docs/codec.md mapping)."""
    if type(v) is Atom:
        return {"true": True, "false": False, "null": None}.get(v, v)
    if isinstance(v, tuple):
        items = tuple(expected(x) for x in v)
        # {bert, true|false|nil} is how BERT writes booleans and [] (both lines read it so)
        if len(items) == 2 and type(items[0]) is Atom and items[0] == "bert":
            if items[1] is True or items[1] is False:
                return items[1]
            if type(items[1]) is Atom and items[1] == "nil":
                return []
        return items
    if isinstance(v, list):
        return [expected(x) for x in v]
    if isinstance(v, dict):
        return [expected((Atom(k), x)) for k, x in v.items()]
    return v


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def as_received(units: list[int]) -> str:
    """What the server gets for a page string of these units (lone halves -> U+FFFD)."""
    raw = b"".join(u.to_bytes(2, "little") for u in units)
    return raw.decode("utf-16-le", "replace")


@PROPERTY_SETTINGS
@given(values)
def test_round_trip(value: Any) -> None:
    out = encode(value)
    assert same(decode(out), expected(value))


@PROPERTY_SETTINGS
@given(values)
def test_round_trip_2012_form(value: Any) -> None:
    assert same(decode(encode(value, booleans="2012")), expected(value))


@PROPERTY_SETTINGS
@given(st.integers(min_value=-(2 ** (8 * 64)) + 1, max_value=2 ** (8 * 64) - 1))
def test_round_trip_big_ints(n: int) -> None:
    assert decode(encode(n, big_ints=True)) == n


@PROPERTY_SETTINGS
@given(values)
def test_everything_encoded_is_readable_by_bertjs(value: Any) -> None:
    out = encode(value)
    assert read(units_of(out)) == js_view(value)
    out.encode("utf-8")  # always sendable as a text frame


@PROPERTY_SETTINGS
@given(values)
def test_no_prefix_decodes(value: Any) -> None:
    units = units_of(encode(value))
    for cut in range(1, len(units)):
        try:
            decode(as_received(units[:cut]))
        except DecodeError as exc:
            assert exc.reason in ("truncated", "length_exceeds_input"), (cut, exc.reason)
        else:
            raise AssertionError(f"prefix of {cut} units decoded")


@PROPERTY_SETTINGS
@given(values, st.data())
def test_single_unit_mutations(value: Any, data: st.DataObject) -> None:
    units = units_of(encode(value))
    i = data.draw(st.integers(min_value=0, max_value=len(units) - 1))
    new = data.draw(
        st.one_of(st.integers(0, 255), st.integers(0, 0xFFFF), st.sampled_from([0, 0x80, 0xFF]))
    )
    op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    if op == "replace":
        units[i] = new
    elif op == "insert":
        units.insert(i, new)
    else:
        del units[i]
    try:
        decode(as_received(units))
    except DecodeError:
        pass


@PROPERTY_SETTINGS
@given(st.text(max_size=200))
def test_random_text(s: str) -> None:
    for candidate in (s, "\x83" + s):
        try:
            decode(candidate)
        except DecodeError:
            pass


@PROPERTY_SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes(b: bytes) -> None:
    for candidate in (b, b"\x83" + b):
        try:
            decode_bytes(candidate)
        except DecodeError:
            pass
        try:
            decode(candidate.decode("latin-1"))
        except DecodeError:
            pass


structural = st.lists(
    st.one_of(
        st.sampled_from([97, 98, 99, 100, 104, 105, 106, 107, 108, 109, 110, 111, 115, 70, 118]),
        st.integers(0, 8),
        st.integers(0, 255),
        st.integers(256, 0xFFFF),
    ),
    max_size=60,
)


@PROPERTY_SETTINGS
@given(structural)
def test_random_tag_soup(units: list[int]) -> None:
    """Mostly-valid-looking input reaches deep into the decoder."""
    try:
        decode(as_received([131, *units]))
    except DecodeError:
        pass
