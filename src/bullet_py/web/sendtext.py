"""A text frame through aiohttp, whatever the application's string holds.

``send_str`` encodes before it writes anything, and a lone surrogate makes it
raise. A message that raised there would stay at the head of its queue (or
go back to it, from Redis) and stop the session: it is sent with U+FFFD in
its place instead, as :func:`bullet_py.core.text.utf8` encodes it everywhere.
"""

from __future__ import annotations

from aiohttp import web

from ..core.text import well_formed


async def send_text(ws: web.WebSocketResponse, text: str) -> None:
    try:
        await ws.send_str(text)
    except UnicodeEncodeError:
        await ws.send_str(well_formed(text))
