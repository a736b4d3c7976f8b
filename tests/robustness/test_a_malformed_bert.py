"""A. Malformed BERT (docs/robustness.md items 1-18), on each inbound path.

The decoder itself is covered case by case in tests/codec/test_bert_limits.py
(items 1-17), tests/codec/test_bert_properties.py (3, 10-18 as properties) and
tests/codec/test_bert_vectors.py (18). Here every exact input of the table
goes over the wire, as a WebSocket text frame and as the body of a POST the
way the original client sends it, and the invariants are checked: the page
gets ``{error, undecodable, Reason}`` (or ``bad_request`` for a term of the
wrong shape), the connection and session stay up, no handler runs, one
WARNING line per input, no traceback, memory bounded.
"""

from __future__ import annotations

import functools
import io
import json
import resource
import sys
import zlib
from pathlib import Path

import aiohttp
import pytest

from bullet_py import logs as bullet_logs
from bullet_py.codec.bert import encode
from tests.helpers import POLL_HEADERS, POST_HEADERS
from tests.processes import run_script
from tests.robustness.apps import A, is_error, read_msg, stream_server
from tests.robustness.harness import LogCheck, probing, traced_growth

MB = 1 << 20
VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def h(spec: str) -> str:
    """Hex bytes (and ``U+XXXX`` code points) as the text a page would send."""
    out = []
    for part in spec.split():
        out.append(chr(int(part[2:], 16)) if part.startswith("U+") else chr(int(part, 16)))
    return "".join(out)


def raw(data: bytes) -> str:
    return data.decode("latin-1")


@functools.cache
def bomb() -> str:
    """Item 8: 83 50 <size> zlib(50 <size> zlib(6D 40000000 + 1 GiB of zeros)), ~1.8 KB."""
    inner = zlib.compressobj(9)
    parts = [inner.compress(b"\x6d\x40\x00\x00\x00")]
    zeros = b"\0" * MB
    parts += [inner.compress(zeros) for _ in range(1024)]
    parts.append(inner.flush())
    inner_z = b"".join(parts)
    layer = b"\x50" + (1 << 30).to_bytes(4, "big") + inner_z
    outer = b"\x83\x50" + len(layer).to_bytes(4, "big") + zlib.compress(layer, 9)
    return raw(outer)


def deep_tuples(n: int) -> str:
    return "\x83" + "h\x01" * n + "j"


def deep_lists(n: int) -> str:
    return "\x83" + "l\x00\x00\x00\x01" * n + "j" + "j" * n


UNDEC, BAD = "undecodable", "bad_request"
ONE = zlib.compress(b"\x61\x01")  # the integer 1, compressed

# (item, input, reason, detail): detail None means "any".
CASES: list[tuple[int, str, str, str | None]] = [
    (2, h("82 61 01"), "undecodable", "bad_version"),
    (2, h("61 01"), "undecodable", "bad_version"),
    (2, h("83"), "undecodable", "truncated"),
    (4, h("83 6D FF FF FF FF 61 62 63"), "undecodable", "length_exceeds_input"),
    (4, h("83 64 FF FF 61 62 63"), "undecodable", "length_exceeds_input"),
    (4, h("83 6B FF FF 61 62"), "undecodable", "length_exceeds_input"),
    (4, h("83 69 FF FF FF FF 6A"), "undecodable", "length_exceeds_input"),
    (4, h("83 6C FF FF FF FF 61 01"), "undecodable", "length_exceeds_input"),
    (4, h("83 6F FF FF FF FF 00 FF"), "undecodable", "length_exceeds_input"),
    (5, h("83 01"), "undecodable", "unsupported_tag:1"),
    (5, h("83 4D 00 00 00 01 03 FF"), "undecodable", "unsupported_tag:77"),
    (5, h("83 52 00"), "undecodable", "unsupported_tag:82"),
    (5, h("83 58"), "undecodable", "unsupported_tag:88"),
    (5, h("83 5A"), "undecodable", "unsupported_tag:90"),
    (5, h("83 70 00 00 00 10"), "undecodable", "unsupported_tag:112"),
    (5, h("83 71 64 00 01 6D"), "undecodable", "unsupported_tag:113"),
    (5, h("83 74 00 00 00 00"), UNDEC, "unsupported_tag:116"),
    (5, h("83 75 00 00 00 00"), "undecodable", "unsupported_tag:117"),
    (5, h("83 50 00 00 00 01 78 9C 03 00"), UNDEC, "unsupported_tag:80"),
    # UTF-8 atoms (118, 119) are accepted: a bare atom is a term of the wrong shape.
    (5, h("83 76 00 03 61 62 63"), "bad_request", None),
    (5, h("83 77 03 61 62 63"), "bad_request", None),
    (6, h("83 67 64 00 03 66 6F 6F 00 00 00 01 00 00 00 00 00"), UNDEC, "unsupported_tag:103"),
    (6, h("83 66 64 00 03 66 6F 6F 00 00 00 01 00"), "undecodable", "unsupported_tag:102"),
    (6, h("83 65 64 00 03 66 6F 6F 00 00 00 01 00"), "undecodable", "unsupported_tag:101"),
    (6, h("83 72 00 01 64 00 03 66 6F 6F 00 00 00 00 01"), "undecodable", "unsupported_tag:114"),
    (6, h("83 71 64 00 03 66 6F 6F 64 00 03 62 61 72 61 01"), "undecodable", "unsupported_tag:113"),
    (7, deep_tuples(1_000), "undecodable", "too_deep"),
    (7, deep_lists(1_000), "undecodable", "too_deep"),
    (7, deep_tuples(100_000), "undecodable", "too_deep"),
    (7, deep_lists(100_000), "undecodable", "too_deep"),
    (8, bomb(), UNDEC, "unsupported_tag:80"),
    (9, raw(b"\x83\x50\x00\x00\x00\x05" + zlib.compress(b"a" * 1000)), UNDEC, "unsupported_tag:80"),
    (9, raw(b"\x83\x50\x40\x00\x00\x00" + zlib.compress(b"\x61\x01")), UNDEC, "unsupported_tag:80"),
    (9, h("83 50 00 00 00 10 67 61 72 62 61 67 65"), UNDEC, "unsupported_tag:80"),
    (9, raw(b"\x83\x50\x00\x00\x00\x02" + ONE + b"xx"), UNDEC, "unsupported_tag:80"),
    (9, raw(b"\x83\x68\x01\x50\x00\x00\x00\x02" + ONE), UNDEC, "unsupported_tag:80"),
    (10, h("83 6C 00 00 00 01 61 01 61 02"), "undecodable", "improper_list"),
    (10, h("83 6C 00 00 00 01 61 01"), "undecodable", None),
    (10, h("83 6C 00 00 00 01 61 01 68 00"), "undecodable", "improper_list"),
    (11, h("83 61 01 47 41 52 42 41 47 45"), "undecodable", "trailing_data"),
    (12, h("83 6F 00 03 0D 40 00") + "\xff" * 200_000, "undecodable", "bignum_too_large"),
    (13, h("83 6C 00 0F 42 40") + "j" * 1_000_000 + "j", UNDEC, "too_many_elements"),
    (13, h("83 6C 00 03 0D 40") + h("74 00 00 00 00") * 200_000 + "j", UNDEC, "too_many_elements"),
    (14, "\x83c" + "nan".ljust(31, "\0"), "undecodable", "bad_float"),
    (14, "\x83c" + "inf".ljust(31, "\0"), "undecodable", "bad_float"),
    (14, "\x83c" + "1e999".ljust(31, "\0"), "undecodable", "bad_float"),
    (14, "\x83c" + "1_0".ljust(31, "\0"), "undecodable", "bad_float"),
    (14, "\x83c" + "  1".ljust(31, "\0"), "undecodable", "bad_float"),
    (14, "\x83c" + "0x10".ljust(31, "\0"), "undecodable", "bad_float"),
    # 31 digits and no NUL is a legal %lf text: accepted by design (docs/codec.md).
    (14, "\x83c" + "1" * 31, "bad_request", None),
    (14, h("83 46 7F F8 00 00 00 00 00 00"), "undecodable", "bad_float"),
    (14, h("83 46 7F F0 00 00 00 00 00 00"), "undecodable", "bad_float"),
    (14, h("83 46 FF F0 00 00 00 00 00 00"), "undecodable", "bad_float"),
    (15, h("83 74 00 00 00 01 6C 00 00 00 01 61 01 6A 61 02"), UNDEC, "unsupported_tag:116"),
    (16, h("83 64 01 00") + "a" * 256, "undecodable", "atom_too_long"),
    (16, h("83 64 00 00"), "bad_request", None),
    (16, h("83 64 00 03 61 00 62"), "bad_request", None),
    (17, h("83 61 01"), "bad_request", None),
    (17, encode((A("sync"),)), "bad_request", None),
    (17, encode((A("sync"), 1)), "bad_request", None),
    (17, encode((A("sync"), (A("read"), A("character")))), "bad_request", None),
    (17, encode((A("sync"), (A("read"), A("character"), A("not_a_list")))), "bad_request", None),
    (17, encode((A("sync"), (A("read"), A("character"), [1]))), "bad_request", None),
    (17, encode((A("sync"), (A("read"), A("character"), [(A("a"), 1, 2)]))), "bad_request", None),
    (17, encode((A("sync"), (A("read"), A("character"), [(A("a"), 1), (A("a"), 2)]))), BAD, None),
    (17, encode((A("sync"), (A("read"), A("character"), [(b"a", 1)]))), "bad_request", None),
]  # fmt: skip


async def _ask_ws(ws: aiohttp.ClientWebSocketResponse, text: str) -> str:
    await ws.send_str(text)
    return await ws.receive_str(timeout=30)


async def _ask_post(s: aiohttp.ClientSession, url: str, text: str) -> tuple[int, str]:
    body = io.BytesIO(text.encode("utf-8"))  # aiohttp warns about big bytes bodies
    async with s.post(url, data=body, headers=POST_HEADERS) as r:
        return r.status, await r.text()


@pytest.mark.parametrize("path", ["websocket", "post"])
async def test_A_table_every_malformed_input_on_each_inbound_path(
    aiohttp_server, caplog, monkeypatch, path
):
    """Items 2 and 4-17: each exact input gives its error; the session then still works."""
    logs = LogCheck(caplog)
    monkeypatch.setattr(bullet_logs, "_PER_WINDOW", 10_000)  # count every line here
    srv = await stream_server(aiohttp_server, max_message_size=2 * MB)
    async with probing(srv.url, bert=True) as probe:
        with traced_growth(16 * MB):
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                if path == "websocket":
                    ws = await s.ws_connect(srv.url, max_msg_size=0)
                else:
                    await s.get(srv.url, headers=POLL_HEADERS)  # a polling session's cookie
                for item, text, reason, detail in CASES:
                    if path == "websocket":
                        reply = await _ask_ws(ws, text)
                    else:
                        status, reply = await _ask_post(s, srv.url, text)
                        assert status == 200, (item, status)  # the original client ignores failures
                    assert is_error(reply, reason, detail), (item, text[:20], reply[:80])
                # Still up, same session: a valid request is served.
                if path == "websocket":
                    assert not is_error(await _ask_ws(ws, read_msg()), "bad_request")
                    await ws.close()
                else:
                    status, reply = await _ask_post(s, srv.url, read_msg())
                    assert status == 200 and not reply.startswith("\x83h\x03d\x00\x05error")
        await probe.check()
    assert srv.calls == ["read"]  # no handler ran for any bad input
    assert logs.count("stream_rejected") == len(CASES)  # one line per rejected input
    logs.assert_no_traceback()


async def test_1_empty_message_on_each_path(aiohttp_server):
    srv = await stream_server(aiohttp_server)
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(srv.url) as ws:
            assert is_error(await _ask_ws(ws, ""), "empty")
        async with s.post(srv.url, data=b"", headers=POST_HEADERS) as r:
            assert r.status == 204  # an empty POST body is a no-op (documented)
    assert srv.calls == []
    # The raw Bullet layer echoes an empty WebSocket message:
    # tests/web/test_websocket.py::test_text_frames_are_messages_both_ways.


async def test_3_every_prefix_of_a_valid_message_fails_cleanly_over_the_wire(aiohttp_server):
    """Every proper prefix of a message using every tag BERT-JS writes (codec-level:
    tests/codec/test_bert_limits.py::test_3_every_prefix_of_every_tag_fails)."""
    srv = await stream_server(aiohttp_server)
    value = (
        A("echo"),
        [A("atom"), b"bin", 7, 300, 2**40, 1.5, "text", (1, 2), [], (A("bert"), A("true"))],
    )
    full = encode(value)
    async with aiohttp.ClientSession() as s, s.ws_connect(srv.url) as ws:
        for cut in range(1, len(full)):
            reply = await _ask_ws(ws, full[:cut])
            assert is_error(reply, "undecodable"), (cut, reply[:40])
        assert not is_error(await _ask_ws(ws, full), "undecodable")
    assert srv.calls == ["echo"]


async def test_12_bignum_at_the_post_size_limit_fails_fast_and_the_probe_goes_on(aiohttp_server):
    """Decode time is linear: a bignum bomb at the size limit is refused at once
    (the timing figure is in bench/robustness.py; here: the probe is served)."""
    limit = MB
    srv = await stream_server(aiohttp_server, max_message_size=limit)
    text = h("83 6F 00 0F FF F9 00") + "\xff" * (limit - 7)
    async with probing(srv.url, bert=True) as probe, aiohttp.ClientSession() as s:
        for _ in range(3):
            status, reply = await _ask_post(s, srv.url, text)
            assert status == 200 and is_error(reply, "undecodable", "bignum_too_large")
            await probe.check()


async def test_18_2016_vectors_echo_back_identical_over_a_websocket(aiohttp_server):
    vectors = json.loads((VECTORS / "bert-js-2016.json").read_text(encoding="utf-8"))["vectors"]
    srv = await stream_server(aiohttp_server)
    head = "\x83h\x02d\x00\x04echo"
    async with aiohttp.ClientSession() as s, s.ws_connect(srv.url) as ws:
        for v in vectors:
            body = "".join(map(chr, v["codepoints"][1:]))
            body = body.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
            assert await _ask_ws(ws, head + body) == head + body, v["name"]


@pytest.mark.skipif(sys.platform != "linux", reason="address-space caps need prlimit(2)")
async def test_8_compressed_bomb_against_a_server_under_an_address_space_cap():
    """The Backbone example runs with RLIMIT_AS capped (its mapped size + 512 MB):
    a regression that inflated the 1 GiB bomb would fail this test with a
    MemoryError in the server instead of taking the machine."""
    import psutil

    async with run_script("backbone/app.py") as server:
        child = psutil.Process(server.proc.pid)
        cap = child.memory_info().vms + 512 * MB
        resource.prlimit(server.proc.pid, resource.RLIMIT_AS, (cap, cap))
        before = child.memory_info().rss
        async with aiohttp.ClientSession() as s:
            url = server.base + "/bullet"
            async with s.ws_connect(url) as ws:
                for _ in range(5):
                    assert is_error(await _ask_ws(ws, bomb()), "undecodable", "unsupported_tag:80")
            status, reply = await _ask_post(s, url, bomb())
            assert status == 200 and is_error(reply, "undecodable")
        assert child.memory_info().rss - before < 10 * MB
        assert server.proc.returncode is None
