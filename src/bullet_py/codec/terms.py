"""Python types for Erlang terms, and proplist helpers.

The design card asks to build on erlastic, so :class:`Atom` *is*
``erlastic.types.Atom`` (a ``str`` subclass): an atom compares and hashes like
its name, so ``Atom("sync") == "sync"`` and dict lookups by plain ``str`` work,
while ``type(x) is Atom`` still tells an atom from a string.

Every other Erlang type maps onto a builtin (see ``docs/codec.md``): tuples are
``tuple``, lists ``list``, strings ``str``, binaries ``bytes``.  Proplists stay
lists of 2-tuples on decode (that is what the page sent, order and duplicates
included); :func:`proplist_to_dict` turns one into a ``dict`` when a handler
wants one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from bullet_py.exceptions import DecodeError, EncodeError

if TYPE_CHECKING:

    class Atom(str):
        """An Erlang atom (typing stand-in for ``erlastic.types.Atom``)."""

else:  # pragma: no branch - the runtime class comes from erlastic
    from erlastic.types import Atom

__all__ = ["Atom", "Duplicates", "atom", "dict_to_proplist", "proplist_to_dict"]

Duplicates = Literal["first", "last", "error"]

_CONSTANT_NAMES: dict[bool | None, str] = {True: "true", False: "false", None: "null"}


def atom(name: str) -> Atom:
    """Return the atom called ``name`` (no validation: the encoder checks the length)."""
    return Atom(name)


def proplist_to_dict(
    pl: Iterable[Any] | Mapping[str, Any], *, duplicates: Duplicates = "last"
) -> dict[str, Any]:
    """Turn a proplist (a list of ``{Key, Value}`` 2-tuples) into a ``dict``.

    Keys may be atoms or strings; the dict keys are plain ``str`` (the atoms
    ``true``/``false``/``null``, which decode to ``True``/``False``/``None``,
    become the keys ``"true"``/``"false"``/``"null"`` again).  A page may
    send a key twice (an Erlang proplist allows it), so the rule is explicit:

    - ``duplicates="last"`` (default): the last pair wins, like ``dict(pairs)``
      and like a JS object literal with a repeated key;
    - ``duplicates="first"``: the first pair wins, like ``proplists:get_value/2``;
    - ``duplicates="error"``: a repeated key raises ``DecodeError("duplicate_key")``.

    A ``dict`` (e.g. from the JSON codec) is accepted and copied, keys checked.

    Raises:
        DecodeError: ``bad_proplist`` if ``pl`` is not a list/tuple of 2-tuples
            with atom or string keys; ``duplicate_key`` as above.
    """
    if isinstance(pl, Mapping):
        pairs: Iterable[Any] = pl.items()
    elif isinstance(pl, list | tuple):
        pairs = pl
    else:
        raise DecodeError("bad_proplist", f"not a list: {type(pl).__name__}")
    out: dict[str, Any] = {}
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise DecodeError("bad_proplist", "element is not a 2-tuple")
        key, value = pair
        if isinstance(key, str):
            key = str(key)
        elif key is True or key is False or key is None:
            # The atoms true/false/null decode to Python constants; as keys
            # they are still those names (a JS object may use them).
            key = _CONSTANT_NAMES[key]
        else:
            raise DecodeError("bad_proplist", f"key is not an atom or string: {type(key).__name__}")
        if key in out:
            if duplicates == "first":
                continue
            if duplicates == "error":
                raise DecodeError("duplicate_key", key[:64])
        out[key] = value
    return out


def dict_to_proplist(d: Mapping[str, Any]) -> list[tuple[Atom, Any]]:
    """Turn a ``dict`` into a proplist ``[(Atom(key), value), ...]`` in dict order.

    This is what BERT-JS makes of a plain JS object, so it is also what the
    BERT encoder writes for a ``dict``.

    Raises:
        EncodeError: ``bad_key`` if a key is not a ``str``.
    """
    out: list[tuple[Atom, Any]] = []
    for key, value in d.items():
        if not isinstance(key, str):
            raise EncodeError("bad_key", f"dict key is not a str: {type(key).__name__}")
        out.append((key if type(key) is Atom else Atom(key), value))
    return out
