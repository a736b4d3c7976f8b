"""Finds a client WebSocket frame sent without a mask (RFC 6455 §5.1), without I/O.

A server must fail the connection when a client frame is not masked; aiohttp
(3.14) accepts such frames. :class:`MaskCheck` reads the byte stream from the
first frame on, looking at frame headers only (the payload is skipped by
length, never copied), so it costs a few operations per frame. The glue
(web/wspeer.py) feeds it every chunk before aiohttp's parser sees it.
"""

from __future__ import annotations

_MASK_BIT = 0x80
_LENGTH_BITS = 0x7F
_MASK_KEY_SIZE = 4


class MaskCheck:
    """``feed(data)`` is False from the first unmasked frame on."""

    __slots__ = ("_head", "_skip", "unmasked")

    def __init__(self) -> None:
        self._head = bytearray()  # the header being read, up to 14 bytes
        self._skip = 0  # payload bytes of the current frame still to pass over
        self.unmasked = False

    def feed(self, data: bytes) -> bool:
        """Read the next bytes of the stream; False if an unmasked frame has begun."""
        if self.unmasked:
            return False
        n = len(data)
        head = self._head
        if not self._skip and not head and n >= 6:
            # The chunk a request-reply client sends: one short frame, whole.
            second = data[1]
            code = second & _LENGTH_BITS
            if second & _MASK_BIT and code < 126 and code + 2 + _MASK_KEY_SIZE == n:
                return True
        pos = 0
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            if not head and n - pos >= 6:
                # A header that begins here and is (short form) whole in this
                # chunk, as nearly every one is: read it in place, no copy.
                second = data[pos + 1]
                if not second & _MASK_BIT:
                    self.unmasked = True
                    return False
                code = second & _LENGTH_BITS
                if code < 126:
                    pos += 2 + _MASK_KEY_SIZE
                    self._skip = code
                    continue
            if len(head) < 2:
                take = min(2 - len(head), n - pos)
                head += data[pos : pos + take]
                pos += take
                if len(head) < 2:
                    break
            if not head[1] & _MASK_BIT:
                self.unmasked = True
                return False
            code = head[1] & _LENGTH_BITS
            extended = 2 if code == 126 else 8 if code == 127 else 0
            size = 2 + extended + _MASK_KEY_SIZE
            if len(head) < size:
                take = min(size - len(head), n - pos)
                head += data[pos : pos + take]
                pos += take
                if len(head) < size:
                    break
            self._skip = code if not extended else int.from_bytes(head[2 : 2 + extended], "big")
            head.clear()
        return True
