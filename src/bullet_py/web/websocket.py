"""The WebSocket transport: each text frame is one message, each message one frame."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from ..connection import CloseReason, Connection
from ..core.negotiate import Transport
from ..core.text import exceeds, max_utf8_bytes
from ..logs import log_event, reject, session_hash

if TYPE_CHECKING:
    from .endpoint import BulletEndpoint

_SEND_ERRORS = (ConnectionError, RuntimeError)


async def serve(endpoint: BulletEndpoint, request: web.Request) -> web.StreamResponse:
    opts = endpoint.options
    ws = web.WebSocketResponse(
        heartbeat=opts.ws_ping_interval,
        max_msg_size=max_utf8_bytes(opts.max_message_size),
        compress=False,  # no permessage-deflate: nothing to inflate, no bombs
        autoping=True,
    )
    if request.headers.get("Sec-WebSocket-Version", "").strip() != "13":
        # aiohttp also takes the drafts 7 and 8; browsers only speak RFC 6455.
        reject("bad_handshake", "version", transport="websocket")
        return web.Response(status=426, headers={"Sec-WebSocket-Version": "13"})
    ready = ws.can_prepare(request)
    if not ready.ok:
        reject("bad_handshake", "websocket", transport="websocket")
        return web.Response(status=400, text="bad WebSocket handshake")
    refused = endpoint.refuse_new_session(Transport.WEBSOCKET)
    if refused is not None:
        return refused
    ws.headers.update(endpoint.cors_headers(request))
    await ws.prepare(request)
    conn = endpoint.create_connection(Transport.WEBSOCKET, request)
    conn.attached = True
    writer = asyncio.get_running_loop().create_task(_write_forever(conn, ws, opts.write_timeout))
    try:
        await conn.open()
        await _read_forever(
            conn, ws, opts.max_message_size, opts.ws_idle_timeout, opts.write_timeout
        )
    finally:
        if not conn.closed:
            conn.close()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        if not ws.closed:
            with contextlib.suppress(*_SEND_ERRORS, asyncio.TimeoutError):
                async with asyncio.timeout(opts.write_timeout):
                    await ws.close(code=conn.close_code)
        conn.attached = False
        await conn.finish()
    return ws


async def _read_forever(
    conn: Connection,
    ws: web.WebSocketResponse,
    max_units: int,
    idle_timeout: float | None,
    write_timeout: float,
) -> None:
    while not conn.closed:
        try:
            msg = await ws.receive(timeout=idle_timeout)
        except TimeoutError:
            log_event(logging.INFO, "websocket_idle", session=session_hash(conn.session_id))
            return
        if msg.type is WSMsgType.TEXT:
            data: str = msg.data
            if exceeds(data, max_units):
                reject(
                    "too_big",
                    "message_size",
                    transport="websocket",
                    session_id=conn.session_id,
                    length=len(data),
                )
                conn.close(CloseReason.TOO_BIG)
                return
            reply = await conn.handle_message(data)
            if reply is None or conn.closed:
                continue
            if conn.outbox:
                conn.send(reply)
                continue
            # Nothing queued ahead of it: write the reply here, saving a task switch.
            try:
                async with asyncio.timeout(write_timeout):
                    await ws.send_str(reply)
            except TimeoutError:
                reject(
                    "slow_consumer",
                    "write_timeout",
                    transport="websocket",
                    session_id=conn.session_id,
                )
                conn.close(CloseReason.POLICY)
                return
            except _SEND_ERRORS:
                return
        elif msg.type is WSMsgType.BINARY:
            log_event(logging.DEBUG, "binary_frame_ignored", length=len(msg.data))
        else:
            if msg.type is WSMsgType.ERROR:
                reject(
                    "bad_frame",
                    type(ws.exception()).__name__,
                    transport="websocket",
                    session_id=conn.session_id,
                )
            return


async def _write_forever(conn: Connection, ws: web.WebSocketResponse, write_timeout: float) -> None:
    """Write queued messages in order; close the socket when the session closes."""
    while True:
        await conn.wait_outgoing(None)
        while (message := conn.take()) is not None:
            try:
                async with asyncio.timeout(write_timeout):
                    await ws.send_str(message)
            except TimeoutError:
                reject(
                    "slow_consumer",
                    "write_timeout",
                    transport="websocket",
                    session_id=conn.session_id,
                )
                conn.close(CloseReason.POLICY)
                break
            except _SEND_ERRORS:
                conn.close()
                return
        if conn.closed:
            with contextlib.suppress(*_SEND_ERRORS, asyncio.TimeoutError):
                async with asyncio.timeout(write_timeout):
                    await ws.close(code=conn.close_code)
            return
