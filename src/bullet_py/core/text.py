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
    """An XHR answer body: :func:`xhr_text` in UTF-8."""
    return xhr_text(message).encode("utf-8")
