"""Which Host names an endpoint serves (core/hosts.py): DNS rebinding, allowed_hosts."""

from __future__ import annotations

import pytest

from bullet_py.core.hosts import (
    host_allowed,
    host_name,
    is_loopback_name,
    is_loopback_socket,
    normalise_pattern,
)


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("Example.COM", "example.com"),
        ("example.com.:8080", "example.com"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]:8080", "[::1]"),
        ("[0:0::1]", "[::1]"),
        ("localhost", "localhost"),
        ("", None),
        ("a b", None),
        ("example.com:http", None),
        ("example.com:123456", None),
        ("[::1", None),
        ("[::1]x", None),
        ("[nothex]", None),
        ("user@example.com", None),
        (":8080", None),
    ],
)
def test_host_name(host, name):
    assert host_name(host) == name


@pytest.mark.parametrize(
    ("pattern", "normal"),
    [
        ("Example.com", "example.com"),
        (".Example.com", ".example.com"),
        ("*.example.com", "*.example.com"),
        ("*", "*"),
        ("::1", "[::1]"),
        ("[::1]", "[::1]"),
        ("example.com.", "example.com"),
    ],
)
def test_normalise_pattern(pattern, normal):
    assert normalise_pattern(pattern) == normal


@pytest.mark.parametrize(
    "name", ["localhost", "app.localhost", "127.0.0.1", "127.8.0.1", "[::1]", "::1"]
)
def test_loopback_names(name):
    assert is_loopback_name(name)


@pytest.mark.parametrize(
    "name", ["evil.example", "localhost.evil.example", "10.0.0.1", "[2001:db8::1]", "0.0.0.0"]
)
def test_not_loopback_names(name):
    assert not is_loopback_name(name)


def test_loopback_socket():
    assert is_loopback_socket(("127.0.0.1", 8080))
    assert is_loopback_socket(("::1", 8080, 0, 0))
    assert is_loopback_socket(("::ffff:127.0.0.1", 8080, 0, 0))
    assert not is_loopback_socket(("0.0.0.0", 8080))
    assert not is_loopback_socket(("192.0.2.1", 8080))
    assert not is_loopback_socket("/run/app.sock")  # a unix socket: a proxy is in front
    assert not is_loopback_socket(None)
    assert not is_loopback_socket(())


def test_dns_rebinding_on_loopback_is_refused_by_default():
    assert not host_allowed("evil.example:8080", None, loopback=True)
    for host in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080", "app.localhost", "LOCALHOST"):
        assert host_allowed(host, None, loopback=True), host


def test_without_allowed_hosts_elsewhere_any_name_passes():
    assert host_allowed("evil.example:8080", None, loopback=False)
    assert not host_allowed("bad host", None, loopback=False)  # malformed, always refused


def test_a_request_without_host_passes():
    assert host_allowed(None, None, loopback=True)
    assert host_allowed(None, frozenset({"example.com"}), loopback=False)


def allowed(host: str, *patterns: str) -> bool:
    return host_allowed(host, frozenset(normalise_pattern(p) for p in patterns), loopback=True)


def test_allowed_hosts_patterns():
    assert allowed("example.com:443", "example.com")
    assert allowed("EXAMPLE.com.", "example.com")
    assert not allowed("www.example.com", "example.com")
    assert allowed("example.com", ".example.com")
    assert allowed("a.b.example.com", ".example.com")
    assert not allowed("badexample.com", ".example.com")
    assert allowed("a.example.com", "*.example.com")
    assert not allowed("example.com", "*.example.com")
    assert not allowed("badexample.com", "*.example.com")
    assert allowed("anything.test", "*")
    assert allowed("[::1]:80", "::1")
    assert not allowed("localhost", "example.com")  # a list replaces the loopback default
    assert not allowed("example.com")  # an empty list serves nothing
