"""The session cookie written as text is byte for byte what aiohttp's own set_cookie writes.

A guard: the day aiohttp (or http.cookies) changes its output, this fails.
"""

from __future__ import annotations

import pytest
from aiohttp import web

from bullet_py.web.endpoint import cookie_header


@pytest.mark.parametrize(
    ("name", "value", "path", "max_age", "secure"),
    [
        ("bullet_sid", "abcDEF_-0123456789abcdefghijklmn", "/bullet", None, False),
        ("bullet_sid", "abcDEF_-0123456789abcdefghijklmn", "/bullet", None, True),
        ("bullet_sid.tab_1234", "x-y_z", "/chat/bullet", 480, False),
        ("bullet_sid.tab_1234", "x-y_z", "/chat/bullet", 480, True),
        ("sid", "v", "/a.b/c~d", 0, False),
    ],
)
def test_same_bytes_as_aiohttp(name, value, path, max_age, secure):
    response = web.StreamResponse()
    response.set_cookie(
        name, value, path=path, httponly=True, samesite="Lax", secure=secure, max_age=max_age
    )
    assert cookie_header(name, value, path, max_age, secure=secure) == (
        response.cookies[name].OutputString()
    )


@pytest.mark.parametrize("path", ["/a b", "/a;b", '/a"b', "/ä"])
def test_anything_needing_quotes_is_left_to_aiohttp(path):
    assert cookie_header("bullet_sid", "v", path, None, secure=False) is None
