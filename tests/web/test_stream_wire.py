"""The Stream layer over real sockets (docs/protocol.md §4; docs/robustness.md items 1, 17, 35-42).

Each client speaks as the original page does: BERT text in WebSocket text
frames, or as the raw body of a POST with the original client's headers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest
from aiohttp import web

from bullet_py import Options, setup
from bullet_py.codec.bert import BertCodec, decode, encode
from bullet_py.codec.terms import Atom
from bullet_py.router import Context, Router, error, ok
from bullet_py.web.endpoint import BulletEndpoint
from tests.helpers import FAST, POLL_HEADERS, POST_HEADERS, cache_buster, wait_for

A = Atom
SYNC = A("sync")
CHARACTER = A("character")
NAME = "Łukasz € 😀"
TIMEOUT = 5.0


class Character:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {"name": "Zoë", "level": 1}
        self.updates = 0

    def read(self, ctx: Context, props: dict[str, Any]) -> Any:
        return ok(self.state)

    def update(self, ctx: Context, props: dict[str, Any]) -> Any:
        if "level" in props and type(props["level"]) is not int:
            return error("bad_level")
        self.updates += 1
        self.state.update(props)
        ctx.broadcast(ok(self.state))
        return ok(self.state)


@dataclasses.dataclass
class Stack:
    app: web.Application
    endpoint: BulletEndpoint
    model: Character
    entered: threading.Event  # the blocking action started
    release: threading.Event  # lets it finish


def build(router: Router | None = None, **options: Any) -> Stack:
    router = router or Router()
    model = Character()
    router.model("character", model)
    entered = threading.Event()
    release = threading.Event()

    @router.action("echo")
    def echo(ctx, msg):
        return msg

    @router.action("boom")
    def boom(ctx, msg):
        raise KeyError("no such thing")

    @router.action("nap", timeout=0.1)
    async def nap(ctx, msg):
        await asyncio.sleep(30)

    @router.action("give_set")
    def give_set(ctx, msg):
        return {1, 2}

    @router.action("block", blocking=True)
    def block(ctx, msg):
        entered.set()
        assert release.wait(TIMEOUT)
        return "released"

    app = web.Application()
    endpoint = setup(app, "/bullet", router, options=Options(**{**FAST, **options}))
    return Stack(app, endpoint, model, entered, release)


def read_msg(*ref: Any) -> str:
    return encode((SYNC, (A("read"), CHARACTER, [], *ref)))


def update_msg(props: list[tuple[Atom, Any]], *ref: Any) -> str:
    return encode((SYNC, (A("update"), CHARACTER, props, *ref)))


async def ws_ask(ws, text: str) -> Any:
    await ws.send_str(text)
    return decode(await ws.receive_str(timeout=TIMEOUT))


async def post(client, text: str) -> tuple[int, Any]:
    resp = await client.post("/bullet", data=text.encode("utf-8"), headers=POST_HEADERS)
    body = await resp.text()
    if resp.status == 200:
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        return resp.status, decode(body)
    assert body == ""
    return resp.status, None


async def open_polling(client, endpoint: BulletEndpoint) -> str:
    """A polling session as the original client makes one: GET → 204 + cookie."""
    resp = await client.get("/bullet", headers=POLL_HEADERS, params=cache_buster())
    assert resp.status == 204
    return resp.cookies["bullet_sid"].value


async def parked_get(client, endpoint: BulletEndpoint, sid: str) -> asyncio.Future[Any]:
    """A GET with the session's cookie, parked on the server (checked, not assumed)."""
    task = asyncio.ensure_future(client.get("/bullet", headers=POLL_HEADERS, params=cache_buster()))
    await wait_for(lambda: endpoint.registry.get(sid) is not None)
    conn = endpoint.registry.get(sid)
    await wait_for(lambda: conn.parked_polls == 1)
    return task


STATE = [(A("name"), "Zoë"), (A("level"), 1)]


# --- round trips ------------------------------------------------------------------


async def test_sync_round_trip_over_websocket(aiohttp_client):
    stack = build()
    model = stack.model
    client = await aiohttp_client(stack.app)
    async with client.ws_connect("/bullet") as ws:
        assert await ws_ask(ws, read_msg()) == (SYNC, A("ok"), STATE)
        props = [(A("name"), NAME), (A("level"), 7)]
        assert await ws_ask(ws, update_msg(props)) == (SYNC, A("ok"), props)
        assert await ws_ask(ws, read_msg(17)) == (SYNC, A("ok"), props, 17)
    assert model.state == {"name": NAME, "level": 7}


async def test_sync_round_trip_over_post_as_the_original_client_sends_it(aiohttp_client):
    stack = build()
    model = stack.model
    client = await aiohttp_client(stack.app)
    # No session cookie: a handler for this one message, as the original server does.
    assert await post(client, read_msg()) == (200, (SYNC, A("ok"), STATE))
    props = [(A("name"), NAME)]
    status, reply = await post(client, update_msg(props, 3))
    assert status == 200
    assert reply == (SYNC, A("ok"), [(A("name"), NAME), (A("level"), 1)], 3)
    assert model.state["name"] == NAME


async def test_post_body_is_never_parsed_as_a_form(aiohttp_client):
    stack = build()
    client = await aiohttp_client(stack.app)
    text = "a&b=c+d%20e"
    assert await post(client, encode((A("echo"), text))) == (200, text)


# --- broadcast to other pages ----------------------------------------------------------


async def test_update_reaches_every_other_page_websocket_and_parked_poll(aiohttp_client):
    stack = build()
    endpoint = stack.endpoint
    client_a = await aiohttp_client(stack.app)
    client_b = await aiohttp_client(client_a.server)
    client_c = await aiohttp_client(client_a.server)
    sid_c = await open_polling(client_c, endpoint)
    async with client_a.ws_connect("/bullet") as ws_a, client_b.ws_connect("/bullet") as ws_b:
        poll_c = await parked_get(client_c, endpoint, sid_c)
        props = [(A("name"), NAME), (A("level"), 2)]
        assert await ws_ask(ws_a, update_msg(props, 1)) == (SYNC, A("ok"), props, 1)
        pushed = (SYNC, A("ok"), props)  # no Ref: a broadcast resolves nothing
        assert decode(await ws_b.receive_str(timeout=TIMEOUT)) == pushed
        resp = await asyncio.wait_for(poll_c, TIMEOUT)
        assert resp.status == 200
        assert decode(await resp.text()) == pushed
        # A is not sent its own update twice: its next frame is the next reply.
        assert await ws_ask(ws_a, encode((A("echo"), "next"))) == "next"


async def test_update_by_post_reaches_the_others_but_not_the_poster(aiohttp_client):
    stack = build()
    endpoint = stack.endpoint
    client_a = await aiohttp_client(stack.app)
    client_b = await aiohttp_client(client_a.server)
    sid_a = await open_polling(client_a, endpoint)
    sid_b = await open_polling(client_b, endpoint)
    poll_b = await parked_get(client_b, endpoint, sid_b)
    props = [(A("level"), 9)]
    status, reply = await post(client_a, update_msg(props))  # carries A's cookie
    assert status == 200
    assert reply == (SYNC, A("ok"), [(A("name"), "Zoë"), (A("level"), 9)])
    resp = await asyncio.wait_for(poll_b, TIMEOUT)
    assert decode(await resp.text()) == reply
    conn_a = endpoint.registry.get(sid_a)
    assert conn_a is not None and len(conn_a.outbox) == 0  # nothing queued for the poster


# --- errors: each followed by a successful request on the same connection ------------------

ERROR_CASES = [
    ("", "empty"),
    ("\x82\x61\x01", "undecodable"),
    ("\x83\x61\x01GARBAGE", "undecodable"),
    (encode(1), "bad_request"),
    (encode((SYNC, (A("read"), CHARACTER))), "bad_request"),
    (encode((SYNC, (A("read"), CHARACTER, A("not_a_list")))), "bad_request"),
    (encode((SYNC, (A("read"), CHARACTER, [(A("a"), 1), (A("a"), 2)]))), "bad_request"),
    (encode((A("frobnicate"), (A("read"), CHARACTER, []))), "unknown_action"),
    (encode((SYNC, (A("read"), A("nosuchmodel"), []))), "unknown_model"),
    (encode((SYNC, (A("read"), A("__class__"), []))), "unknown_model"),
    (encode((SYNC, (A("drop"), CHARACTER, []))), "unknown_method"),
    (encode((SYNC, (A("delete"), CHARACTER, []))), "unknown_method"),
    (encode((A("boom"), 1)), "handler_error"),
    (encode((A("nap"), 1)), "timeout"),
    (encode((A("give_set"), 1)), "bad_reply"),
]
CASE_IDS = [reason + ":" + repr(text[:12]) for text, reason in ERROR_CASES]


@pytest.mark.parametrize(("text", "reason"), ERROR_CASES, ids=CASE_IDS)
async def test_websocket_errors_then_success_on_the_same_socket(aiohttp_client, text, reason):
    stack = build()
    endpoint = stack.endpoint
    client = await aiohttp_client(stack.app)
    async with client.ws_connect("/bullet") as ws:
        reply = await ws_ask(ws, text)
        assert reply[:2] == (A("error"), A(reason))
        assert isinstance(reply[2], str)
        assert await ws_ask(ws, read_msg()) == (SYNC, A("ok"), STATE)
        assert len(endpoint.registry) == 1  # still the same session


@pytest.mark.parametrize(("text", "reason"), ERROR_CASES[1:], ids=CASE_IDS[1:])
async def test_post_errors_are_200_answers_then_success_in_the_same_session(
    aiohttp_client, text, reason
):
    stack = build()
    endpoint = stack.endpoint
    client = await aiohttp_client(stack.app)
    sid = await open_polling(client, endpoint)
    status, reply = await post(client, text)
    assert status == 200  # the original client ignores a failed POST
    assert reply[:2] == (A("error"), A(reason))
    assert await post(client, read_msg(5)) == (200, (SYNC, A("ok"), STATE, 5))
    conn = endpoint.registry.get(sid)
    assert conn is not None and not conn.closed


async def test_empty_post_is_a_no_op_answered_204(aiohttp_client):
    stack = build()
    endpoint = stack.endpoint
    client = await aiohttp_client(stack.app)
    await open_polling(client, endpoint)
    assert await post(client, "") == (204, None)
    assert await post(client, read_msg()) == (200, (SYNC, A("ok"), STATE))


async def test_model_refusal_is_a_sync_error_with_the_ref(aiohttp_client):
    stack = build()
    model = stack.model
    client = await aiohttp_client(stack.app)
    async with client.ws_connect("/bullet") as ws:
        reply = await ws_ask(ws, update_msg([(A("level"), "high")], 8))
        assert reply == (SYNC, A("error"), A("bad_level"), 8)
    assert model.updates == 0


# --- text beyond Latin-1 ------------------------------------------------------------------


async def test_non_latin1_name_round_trips_on_every_path(aiohttp_client):
    stack = build()
    endpoint, model = stack.endpoint, stack.model
    client_a = await aiohttp_client(stack.app)
    client_c = await aiohttp_client(client_a.server)
    sid_c = await open_polling(client_c, endpoint)
    poll_c = await parked_get(client_c, endpoint, sid_c)
    props = [(A("name"), NAME)]
    expected = [(A("name"), NAME), (A("level"), 1)]
    async with client_a.ws_connect("/bullet") as ws:
        reply = await ws_ask(ws, update_msg(props))
    assert reply == (SYNC, A("ok"), expected)
    assert model.state["name"] == NAME
    resp = await asyncio.wait_for(poll_c, TIMEOUT)
    raw = await resp.read()
    assert NAME.encode("utf-8") in raw  # the text travels as the user typed it
    assert decode(raw.decode("utf-8")) == (SYNC, A("ok"), expected)
    assert await post(client_a, read_msg()) == (200, (SYNC, A("ok"), expected))
    # As an atom too (a model name nobody registered): echoed back intact.
    unknown = encode((SYNC, (A("read"), A("Łukasz€"), [])))
    assert await post(client_a, unknown) == (200, (A("error"), A("unknown_model"), "Łukasz€"))


# --- the 2012 BERT-JS line ------------------------------------------------------------------


async def test_2012_boolean_option_sends_atoms(aiohttp_client):
    router = Router(codec=BertCodec(booleans="2012"))

    @router.model("flags")
    class Flags:
        def read(self, ctx, props):
            return ok({"on": True, "off": False, "list": []})

    stack = build(router)
    client = await aiohttp_client(stack.app)
    async with client.ws_connect("/bullet") as ws:
        await ws.send_str(encode((SYNC, (A("read"), A("flags"), []))))
        text = await ws.receive_str(timeout=TIMEOUT)
        # A 2012 page sends its booleans as atoms; they arrive as Python booleans.
        seen = await ws_ask(ws, "\x83h\x02d\x00\x04echod\x00\x05false")
    assert "d\x00\x04true" in text and "d\x00\x05false" in text
    assert "bert" not in text  # no {bert, true}: the 2012 line reads that as a tuple
    assert decode(text) == (SYNC, A("ok"), [(A("on"), True), (A("off"), False), (A("list"), [])])
    assert seen is False
    text_2012 = await post(client, encode((A("echo"), True)))
    assert text_2012 == (200, True)


async def test_2016_is_the_default_boolean_form(aiohttp_client):
    stack = build()
    client = await aiohttp_client(stack.app)
    resp = await client.post(
        "/bullet", data=encode((A("echo"), True)).encode("utf-8"), headers=POST_HEADERS
    )
    assert await resp.text() == "\x83h\x02d\x00\x04bertd\x00\x04true"


# --- order and concurrency -----------------------------------------------------------------


async def test_pipelined_websocket_messages_are_answered_in_order(aiohttp_client):
    stack = build()
    client = await aiohttp_client(stack.app)
    async with client.ws_connect("/bullet") as ws:
        for i in range(1000):
            await ws.send_str(encode((A("echo"), i)))
        replies = []
        async with asyncio.timeout(30):
            for _ in range(1000):
                replies.append(decode(await ws.receive_str()))
    assert replies == list(range(1000))


async def test_rapid_posts_of_one_session_each_get_their_own_reply(aiohttp_client):
    stack = build()
    endpoint, model = stack.endpoint, stack.model
    client = await aiohttp_client(stack.app)
    await open_polling(client, endpoint)
    results = await asyncio.wait_for(
        asyncio.gather(*(post(client, encode((A("echo"), i))) for i in range(100))), 30
    )
    assert results == [(200, i) for i in range(100)]
    for i in range(20):  # sequential updates: each sees the previous one
        status, reply = await post(client, update_msg([(A("level"), i)]))
        assert status == 200
        assert reply[2][1] == (A("level"), i)
    assert model.updates == 20


async def test_blocking_handler_does_not_stall_other_sessions(aiohttp_client):
    stack = build()
    client = await aiohttp_client(stack.app)
    ws_a = await client.ws_connect("/bullet")
    client.session.cookie_jar.clear()  # two pages, two sessions (no resuming)
    async with ws_a, client.ws_connect("/bullet") as ws_b:
        try:
            await ws_a.send_str(encode((A("block"), 1)))
            assert await asyncio.to_thread(stack.entered.wait, TIMEOUT)
            # A's handler holds a worker thread; B is still served on the loop.
            for i in range(5):
                assert await ws_ask(ws_b, encode((A("echo"), i))) == i
            assert await post(client, encode((A("echo"), "post"))) == (200, "post")
        finally:
            stack.release.set()
        assert decode(await ws_a.receive_str(timeout=TIMEOUT)) == "released"
