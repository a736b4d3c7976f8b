"""Which browser tab a request comes from, when the client says so."""

from __future__ import annotations

from aiohttp import web

_TAB_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def tab_id(request: web.Request) -> str | None:
    """The tab id the project's client sends, if well formed (8 to 64 token characters).

    ``X-Bullet-Tab`` on polls and POSTs; ``bullet_tab`` in the query of an
    EventSource URL, which cannot carry headers.
    """
    tab = request.headers.get("X-Bullet-Tab") or request.query.get("bullet_tab")
    if tab and 8 <= len(tab) <= 64 and _TAB_CHARS.issuperset(tab):
        return tab
    return None
