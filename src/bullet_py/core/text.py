"""Facts about message text that every transport needs."""

from __future__ import annotations

BOM = "\ufeff"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"


def utf16_units(text: str) -> int:
    """Length as JavaScript counts it: an astral character is two code units."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def exceeds(text: str, max_units: int) -> bool:
    """True when ``text`` is longer than ``max_units`` UTF-16 code units."""
    if len(text) * 2 <= max_units:
        return False
    return len(text) > max_units or utf16_units(text) > max_units


def max_utf8_bytes(max_units: int) -> int:
    """The most UTF-8 bytes a text of ``max_units`` code units can take."""
    return 3 * max_units + 4


def xhr_text(message: str) -> str:
    """An XHR answer's text: the browser strips one leading BOM, so add one back."""
    if message.startswith(BOM):
        return BOM + message
    return message


def xhr_body(message: str) -> bytes:
    """An XHR answer body: :func:`xhr_text` in UTF-8 (see :func:`utf8`)."""
    return utf8(xhr_text(message))


def well_formed(text: str) -> str:
    """``text`` with its surrogate pairs joined and each lone surrogate made U+FFFD.

    A Python ``str`` may hold a lone surrogate (``"\\ud800"``); UTF-8 cannot
    carry one, and a browser given one shows U+FFFD. The codecs never make
    one; an application's own string can.
    """
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def utf8(text: str) -> bytes:
    """``text`` in UTF-8, lone surrogates as U+FFFD (see :func:`well_formed`).

    Every transport encodes what it sends with this, so a lone surrogate in
    a reply or a push is a U+FFFD for the client, not an error that would
    stop the session's queue behind it. The usual case costs one ``encode``.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return well_formed(text).encode("utf-8")
