"""Is a stream's peer alive right now? Asked when another connection wants its session.

A silent drop (a phone changing network: no FIN, no RST) leaves the server
believing a connection alive until its keepalive fails, tens of seconds
later, while the client reconnects within a second. So a holder is asked at
once, with a short deadline, and these are its signs of life:

- for a WebSocket, a frame from the peer (its pong, or anything else it
  sends): a browser answers pings from its network stack however busy the
  page is; a client that neither reads nor answers is taken for dead;
- for an event stream, which carries nothing from the client, the TCP
  acknowledgement of what was just written: the kernel's count of
  unacknowledged bytes (``TCP_INFO``) falls to zero within a round trip for
  a live peer and never for one that vanished. Behind a proxy the proxy
  acknowledges, so there the stream always counts as alive, and the asker
  gets a session of its own.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from aiohttp import web

_ACK_POLL = 0.02  # the kernel's state has no event to await


def tcp_unacked(sock: object) -> int | None:
    """Bytes sent on ``sock`` not yet acknowledged by the peer (Linux ``TCP_INFO``), if known."""
    option = getattr(socket, "TCP_INFO", None)
    getsockopt = getattr(sock, "getsockopt", None)
    if option is None or getsockopt is None:
        return None
    try:
        info = getsockopt(socket.IPPROTO_TCP, option, 104)
    except OSError:
        return None
    if len(info) < 28:
        return None
    # struct tcp_info: eight one-byte fields, then rto, ato, snd_mss, rcv_mss, unacked (u32).
    return int(struct.unpack_from("=I", info, 24)[0])


def proxied(request: web.Request) -> bool:
    """The request came through a proxy (which acknowledges in its client's place)."""
    headers = request.headers
    return "X-Forwarded-For" in headers or "Forwarded" in headers or "Via" in headers


async def answered(
    transport: asyncio.Transport | None,
    heard: asyncio.Future[None] | None,
    timeout: float,
    *,
    count_ack: bool,
) -> bool:
    """Wait up to ``timeout`` for ``heard`` or, if ``count_ack``, the TCP acknowledgement.

    Call it right after writing something to the peer. With neither sign
    available (no frame can come and the acknowledgement cannot be read),
    the peer is taken to be alive: keeping a live session is the safe side.
    """
    if transport is None or transport.is_closing():
        return False
    sock = transport.get_extra_info("socket")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if heard is not None and heard.done():
            return True
        if count_ack:
            unacked = tcp_unacked(sock)
            if unacked is None and heard is None:
                return True
            if unacked == 0 and not transport.get_write_buffer_size():
                return True
        elif heard is None:
            return True
        if transport.is_closing():
            return False
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        wait = min(_ACK_POLL, remaining) if count_ack else remaining
        if heard is not None:
            await asyncio.wait([heard], timeout=wait)
        else:
            await asyncio.sleep(wait)
