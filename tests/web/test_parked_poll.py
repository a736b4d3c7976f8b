"""A parked long-poll waits off aiohttp (web/parkedpoll.py), and nobody can tell.

Its answer is the bytes aiohttp writes, the connection serves the client's
next request afterwards, a client that leaves unparks it at once and loses
nothing, and where aiohttp would log the request it stays in aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web
from aiohttp.test_utils import TestServer

from bullet_py import Connection
from bullet_py.core.text import xhr_body
from bullet_py.web.endpoint import BulletEndpoint
from tests.helpers import RAW_TIMEOUT, RawHttpClient, make_app, wait_for, without_date

_TIMEOUT = RAW_TIMEOUT


class _Client(RawHttpClient):
    """One keep-alive connection speaking just enough HTTP/1.1 for polls."""

    def send_poll(self) -> None:
        self.writer.write(self.poll_bytes())

    @classmethod
    async def with_parked_poll(
        cls, port: int, endpoint: BulletEndpoint
    ) -> tuple[_Client, Connection]:
        """A client whose session's first poll is parked on the server, and that session."""
        client = await cls.open(port)
        try:
            await client.start_session()
            client.send_poll()
            await wait_for(lambda: sum(len(c.core.polls) for c in endpoint.registry) == 1)
        except BaseException:
            client.close()
            raise
        (conn,) = list(endpoint.registry)
        return client, conn


async def test_a_parked_poll_leaves_aiohttp_and_its_answer_is_aiohttps_bytes(aiohttp_server):
    app, endpoint = make_app(poll_timeout=30.0)
    server = await aiohttp_server(app)
    client, conn = await _Client.with_parked_poll(server.port, endpoint)
    try:
        assert server.handler is not None
        await wait_for(lambda: not server.handler.connections)  # aiohttp let go of it
        conn.send("é pushed")
        head, body = await client.answer()
        assert body == xhr_body("é pushed")

        async def same_body(_: web.Request) -> web.Response:
            return web.Response(body=body, content_type="text/plain", charset="utf-8")

        reference = web.Application()
        reference.router.add_get("/", same_body)
        ref_server = await aiohttp_server(reference)
        ref_reader, ref_writer = await asyncio.open_connection("127.0.0.1", ref_server.port)
        try:
            ref_writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            ref_head = await asyncio.wait_for(ref_reader.readuntil(b"\r\n\r\n"), _TIMEOUT)
        finally:
            ref_writer.close()
        assert without_date(head) == without_date(ref_head)

        # The same connection, handed back to aiohttp, serves the next poll.
        client.send_poll()
        await wait_for(lambda: len(conn.core.polls) == 1)
        conn.send("second")
        assert (await client.answer())[1] == xhr_body("second")
    finally:
        client.close()


async def test_the_timeout_answer_is_aiohttps_204_and_the_connection_goes_on(aiohttp_server):
    app, endpoint = make_app(poll_timeout=0.2)
    server = await aiohttp_server(app)
    client = await _Client.open(server.port)
    try:
        await client.start_session()
        client.send_poll()
        head, body = await client.answer()
        assert body == b""
        assert re.fullmatch(
            rb"HTTP/1\.1 204 No Content\r\nDate: [^\r]+\r\nServer: [^\r]+\r\n\r\n", head
        )
        (conn,) = list(endpoint.registry)
        conn.send("next")
        client.send_poll()
        assert (await client.answer())[1] == xhr_body("next")
    finally:
        client.close()


async def test_a_client_that_leaves_unparks_at_once_and_loses_nothing(aiohttp_server):
    app, endpoint = make_app(poll_timeout=30.0, session_idle_timeout=30.0)
    server = await aiohttp_server(app)
    first, conn = await _Client.with_parked_poll(server.port, endpoint)
    first.close()
    await wait_for(lambda: not conn.core.polls)  # long before the 30 s timeout
    conn.send("kept")
    second = await _Client.open(server.port)
    try:
        second.cookie = first.cookie
        second.send_poll()
        assert (await second.answer())[1] == xhr_body("kept")
    finally:
        second.close()


async def test_a_request_sent_while_parked_is_served_after_the_answer(aiohttp_server):
    app, endpoint = make_app(poll_timeout=30.0)
    server = await aiohttp_server(app)
    client, conn = await _Client.with_parked_poll(server.port, endpoint)
    try:
        client.send_poll()  # pipelined: it waits in the parked poll's hands
        parked = conn.request.transport.get_protocol()
        await wait_for(lambda: bool(parked.pending))
        conn.send("one")
        assert (await client.answer())[1] == xhr_body("one")
        await wait_for(lambda: len(conn.core.polls) == 1)  # the second one, parked in turn
        conn.send("two")
        assert (await client.answer())[1] == xhr_body("two")
    finally:
        client.close()


async def test_with_an_access_log_the_poll_stays_in_aiohttp(aiohttp_server, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    app, endpoint = make_app(poll_timeout=30.0)
    server = await aiohttp_server(app)
    client, conn = await _Client.with_parked_poll(server.port, endpoint)
    try:
        assert server.handler is not None
        assert len(server.handler.connections) == 1  # still aiohttp's: it logs the poll at its end
        conn.send("logged")
        assert (await client.answer())[1] == xhr_body("logged")
        await wait_for(lambda: sum('"GET /bullet' in r.getMessage() for r in caplog.records) == 2)
    finally:
        client.close()


async def test_shutdown_answers_a_parked_poll_and_closes_its_connection():
    app, endpoint = make_app(poll_timeout=30.0)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client, _ = await _Client.with_parked_poll(server.port, endpoint)
    try:
        closing = asyncio.ensure_future(server.close())
        head, _ = await client.answer()
        assert head.startswith(b"HTTP/1.1 204 ")
        assert await asyncio.wait_for(client.reader.read(), _TIMEOUT) == b""
        await asyncio.wait_for(closing, _TIMEOUT)
    finally:
        client.close()
        await server.close()


async def test_handler_cancellation_does_not_close_a_parked_poll():
    app, endpoint = make_app(poll_timeout=30.0)
    server = TestServer(app, host="127.0.0.1", handler_cancellation=True)
    await server.start_server()
    client, conn = await _Client.with_parked_poll(server.port, endpoint)
    try:
        conn.send("still here")
        assert (await client.answer())[1] == xhr_body("still here")
    finally:
        client.close()
        await server.close()
