"""The Backbone example (docs/protocol.md §6): page, browser files, the ``character`` model."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import signal
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from bullet_py.codec.bert import decode, encode
from bullet_py.codec.terms import Atom
from tests.helpers import POLL_HEADERS, POST_HEADERS, cache_buster, wait_for

A = Atom
SYNC = A("sync")
CHARACTER = A("character")
TIMEOUT = 5.0
APP_PATH = Path(__file__).resolve().parents[2] / "examples" / "backbone" / "app.py"

INITIAL = [
    (A("id"), 1),
    (A("name"), "Zoë"),
    (A("class"), "wizard"),
    (A("level"), 1),
    (A("hp"), 10),
]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("backbone_example_app", APP_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


backbone = load_example()


def sync(method: str, props: list[tuple[Atom, Any]], *ref: Any) -> str:
    return encode((SYNC, (A(method), CHARACTER, props, *ref)))


async def ws_ask(ws, text: str) -> Any:
    await ws.send_str(text)
    return decode(await ws.receive_str(timeout=TIMEOUT))


async def post(client, text: str) -> Any:
    resp = await client.post("/bullet", data=text.encode("utf-8"), headers=POST_HEADERS)
    assert resp.status == 200
    return decode(await resp.text())


def endpoint_of(app):
    from bullet_py import ENDPOINTS

    return app[ENDPOINTS]["/bullet"]


# --- the page and the files -----------------------------------------------------------


async def test_page_and_browser_files_are_served(aiohttp_client):
    client = await aiohttp_client(backbone.build_app())
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "<html" in (await resp.text()).lower()
    for name in ("bullet.js", "bert.js", "stream.js", "backbone-bullet.js"):
        resp = await client.get(f"/js/{name}")
        assert resp.status == 200, name
        assert len(await resp.read()) > 100
    resp = await client.get("/app.js")
    assert resp.status == (200 if (APP_PATH.parent / "app.js").is_file() else 404)
    assert (await client.get("/js/../app.py")).status == 404


# --- the model ---------------------------------------------------------------------------


async def test_read_answers_the_initial_state(aiohttp_client):
    client = await aiohttp_client(backbone.build_app())
    async with client.ws_connect("/bullet") as ws:
        assert await ws_ask(ws, sync("read", [])) == (SYNC, A("ok"), INITIAL)
        assert await ws_ask(ws, sync("read", [], 12)) == (SYNC, A("ok"), INITIAL, 12)


async def test_update_goes_to_every_other_open_page(aiohttp_client):
    app = backbone.build_app()
    endpoint = endpoint_of(app)
    client_a = await aiohttp_client(app)
    client_b = await aiohttp_client(client_a.server)
    client_c = await aiohttp_client(client_a.server)
    resp = await client_c.get("/bullet", headers=POLL_HEADERS, params=cache_buster())
    assert resp.status == 204
    sid_c = resp.cookies["bullet_sid"].value
    async with client_a.ws_connect("/bullet") as ws_a, client_b.ws_connect("/bullet") as ws_b:
        poll_c = asyncio.ensure_future(
            client_c.get("/bullet", headers=POLL_HEADERS, params=cache_buster())
        )
        await wait_for(lambda: endpoint.registry.get(sid_c) is not None)
        await wait_for(lambda: endpoint.registry.get(sid_c).parked_polls == 1)
        new = [(A("name"), "Łukasz € 😀"), (A("level"), 5)]
        expected = [
            (A("id"), 1),
            (A("name"), "Łukasz € 😀"),
            (A("class"), "wizard"),
            (A("level"), 5),
            (A("hp"), 10),
        ]
        assert await ws_ask(ws_a, sync("update", new, 99)) == (SYNC, A("ok"), expected, 99)
        assert decode(await ws_b.receive_str(timeout=TIMEOUT)) == (SYNC, A("ok"), expected)
        resp = await asyncio.wait_for(poll_c, TIMEOUT)
        assert resp.status == 200
        assert decode(await resp.text()) == (SYNC, A("ok"), expected)
        # The caller got its reply only: its next frame answers its next request.
        assert await ws_ask(ws_a, sync("read", [])) == (SYNC, A("ok"), expected)
        # Patch by POST (the original client's other path) reaches B as well.
        patched = await post(client_c, sync("patch", [(A("hp"), 3)]))
        assert patched[2][4] == (A("hp"), 3)
        assert decode(await ws_b.receive_str(timeout=TIMEOUT)) == patched


@pytest.mark.parametrize(
    "props",
    [
        [(A("strength"), 3)],  # not a field
        [(A("level"), "high")],
        [(A("level"), True)],  # a boolean is not a level
        [(A("level"), 0)],
        [(A("name"), "")],
        [(A("name"), b"bytes")],
        [(A("id"), 2)],  # the id is fixed
        [(A("hp"), 1.5)],
    ],
)
async def test_bad_fields_are_refused_and_nothing_changes(aiohttp_client, props):
    client = await aiohttp_client(backbone.build_app())
    async with client.ws_connect("/bullet") as ws:
        reply = await ws_ask(ws, sync("update", props, 4))
        assert reply == (SYNC, A("error"), A("bad_field"), 4)
        assert await ws_ask(ws, sync("read", [])) == (SYNC, A("ok"), INITIAL)


async def test_delete_is_not_a_method_of_the_character(aiohttp_client):
    client = await aiohttp_client(backbone.build_app())
    async with client.ws_connect("/bullet") as ws:
        reply = await ws_ask(ws, sync("delete", []))
        assert reply == (A("error"), A("unknown_method"), "delete")
        assert await ws_ask(ws, sync("read", [])) == (SYNC, A("ok"), INITIAL)


async def test_each_app_has_its_own_character(aiohttp_client):
    one = await aiohttp_client(backbone.build_app())
    two = await aiohttp_client(backbone.build_app(initial={"id": 1, "name": "Ann"}))
    await post(one, sync("patch", [(A("level"), 3)]))
    assert (await post(two, sync("read", [])))[2] == [(A("id"), 1), (A("name"), "Ann")]
    assert (await post(one, sync("read", [])))[2][3] == (A("level"), 3)


# --- from the environment (the gunicorn factory) ---------------------------------------


async def test_the_gunicorn_factory_is_a_coroutine_function_building_the_app(aiohttp_client):
    assert inspect.iscoroutinefunction(backbone.make_app)  # aiohttp's worker wants one
    client = await aiohttp_client(await backbone.make_app())
    assert (await post(client, sync("read", [])))[2] == INITIAL


async def test_allowed_hosts_come_from_the_environment(aiohttp_client):
    app = backbone.app_from_env({"BULLET_ALLOWED_HOSTS": "example.com, www.example.com"})
    client = await aiohttp_client(app)
    for host, status in [("example.com", 204), ("www.example.com", 204), ("evil.test", 421)]:
        resp = await client.get("/bullet", headers={**POLL_HEADERS, "Host": host})
        assert resp.status == status, host
    default = await aiohttp_client(backbone.app_from_env({}))
    resp = await default.get("/bullet", headers={**POLL_HEADERS, "Host": "example.com"})
    assert resp.status == 421  # bound to loopback: loopback names only


# --- as a script -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_script_prints_its_address_serves_and_stops_on_signal(sig):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(APP_PATH),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.decode().strip() == f"listening on http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}"
            async with session.get(url + "/") as resp:
                assert resp.status == 200
            async with session.ws_connect(url + "/bullet") as ws:
                assert await ws_ask(ws, sync("read", [])) == (SYNC, A("ok"), INITIAL)
        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert b"Traceback" not in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
