"""POSTs landing on a worker other than their session's home, and the home's replies.

The POST goes over the bus to the home (entry ``fwd``), which runs the
handler and sends the reply back (entry ``rep``). If the reply comes after
the POST was answered (202), it is pushed to the session instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ...exceptions import BackendError, SessionNotFound
from ...logs import log_event, session_hash
from ..base import Kind
from .link import CLAIM_LEASE, Link
from .store import Store
from .writer import Writer

logger = logging.getLogger("bullet_py")


class Forwarder:
    """Forwards POSTs to their home and serves the ones forwarded here."""

    def __init__(
        self,
        link: Link,
        writer: Writer,
        store: Store,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self._link = link
        self._writer = writer
        self._store = store
        self._spawn = spawn
        self._requests: dict[str, asyncio.Future[tuple[bool, str | None]]] = {}

    async def forward(
        self, home: str, session_id: str, message: str, *, close: bool = False
    ) -> str | None:
        """Run ``message`` in the session at ``home`` (``close``: end the session there)."""
        request_id = str(next(self._link.seq))
        future: asyncio.Future[tuple[bool, str | None]] = asyncio.get_running_loop().create_future()
        fields = {"k": "fwd", "t": home, "s": session_id, "r": request_id, "m": message}
        if close:
            fields["c"] = "1"
        if not self._writer.publish(fields):
            raise BackendError("Redis unreachable and the local buffer is full")
        self._requests[request_id] = future
        try:
            async with asyncio.timeout(self._link.settings.forward_timeout):
                found, reply = await future
        finally:
            self._requests.pop(request_id, None)
        if not found:
            raise SessionNotFound(session_hash(session_id))
        return reply

    def forwarded(
        self, origin: str, request_id: str, session_id: str, message: str, *, close: bool
    ) -> None:
        """A POST for a session of this worker arrived over the bus: run it, reply."""
        self._spawn(self._serve(origin, request_id, session_id, message, close))

    async def _serve(
        self, origin: str, request_id: str, session_id: str, message: str, close: bool = False
    ) -> None:
        store = self._store
        await store.claimed(
            session_id, CLAIM_LEASE
        )  # may arrive before the claim's request adopted
        found, reply = False, None
        if store.sessions is not None:
            try:
                if close:  # a client ended its session on a stream served elsewhere
                    found = store.sessions.close_forwarded(session_id)
                else:
                    found, reply = await store.sessions.handle_forwarded(session_id, message)
            except Exception:
                logger.exception("forwarded message failed")
                found = True
        fields = {
            "k": "rep",
            "t": origin,
            "r": request_id,
            "s": session_id,
            "f": "1" if found else "0",
        }
        if reply is not None:
            fields["m"] = reply
        if not self._writer.publish(fields):
            log_event(logging.ERROR, "forward_reply_dropped", session=session_hash(session_id))

    def replied(self, fields: dict[str, str]) -> None:
        found = fields.get("f") == "1"
        reply = fields.get("m")
        future = self._requests.pop(fields.get("r", ""), None)
        if future is not None and not future.done():
            future.set_result((found, reply))
            return
        # The POST was answered 202 already: the reply reaches the client by push.
        session_id = fields.get("s")
        if found and reply and session_id:
            self._writer.publish({"k": Kind.SEND.value, "m": reply, "s": session_id})

    def fail_all(self) -> None:
        """The backend closes: the POSTs waiting for a reply get an error."""
        for future in self._requests.values():
            if not future.done():
                future.set_exception(BackendError("backend closed"))
