"""Scheme, host and client through trusted proxies (core/forwarded.py), without a server."""

from __future__ import annotations

import random

import pytest

from bullet_py.core.forwarded import (
    Hop,
    Peer,
    TrustedProxies,
    parse_address,
    parse_forwarded,
    parse_x_forwarded,
    resolve,
)

LOOPBACK = TrustedProxies(("127.0.0.0/8", "::1"))
DIRECT = {"scheme": "http", "host": "127.0.0.1:8080"}


def via(peer: str = "127.0.0.1", trusted: TrustedProxies = LOOPBACK, **headers: list[str]) -> Peer:
    return resolve(peer=peer, trusted=trusted, **DIRECT, **headers)  # type: ignore[arg-type]


# --- trust ----------------------------------------------------------------------------


def test_trusted_networks_addresses_and_any():
    trusted = TrustedProxies(("10.0.0.0/8", "192.0.2.7", "2001:db8::/32"))
    assert "10.1.2.3" in trusted and "192.0.2.7" in trusted and "2001:db8::5" in trusted
    assert "192.0.2.8" not in trusted and "11.0.0.1" not in trusted and "::1" not in trusted
    assert "not-an-address" not in trusted
    assert "203.0.113.9" in TrustedProxies(("*",))
    assert "127.0.0.1" not in TrustedProxies(())


def test_an_ipv4_client_on_a_dual_stack_socket_is_its_ipv4_address():
    assert "::ffff:127.0.0.1" in LOOPBACK
    assert via(peer="::ffff:127.0.0.1", x_forwarded_proto=["https"]).scheme == "https"


def test_a_host_bit_set_network_is_accepted_and_one_string_is_refused():
    assert "127.9.9.9" in TrustedProxies(("127.0.0.1/8",))
    with pytest.raises(ValueError):
        TrustedProxies("127.0.0.1")
    with pytest.raises(ValueError):
        TrustedProxies(("proxy.example",))


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1:4711 ", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:4711", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("unknown", None),
        ("_hidden", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("", None),
    ],
)
def test_parse_address(text, address):
    parsed = parse_address(text)
    assert (None if parsed is None else str(parsed)) == address


# --- an untrusted peer ------------------------------------------------------------------


def test_an_untrusted_peers_headers_are_ignored():
    got = resolve(
        peer="203.0.113.5",
        trusted=LOOPBACK,
        scheme="http",
        host="app.internal",
        forwarded=["for=198.51.100.1;proto=https;host=example.com"],
        x_forwarded_for=["198.51.100.1"],
        x_forwarded_proto=["https"],
        x_forwarded_host=["example.com"],
    )
    assert got == Peer("http", "app.internal", "203.0.113.5", forwarded=False)


def test_no_trusted_proxies_at_all():
    got = via(trusted=TrustedProxies(()), x_forwarded_proto=["https"])
    assert got == Peer("http", "127.0.0.1:8080", "127.0.0.1")


def test_a_trusted_peer_without_headers_is_itself():
    assert via() == Peer("http", "127.0.0.1:8080", "127.0.0.1", forwarded=False)
    assert via(peer=None) == Peer("http", "127.0.0.1:8080", None)  # type: ignore[arg-type]


# --- X-Forwarded-* ------------------------------------------------------------------------


def test_the_nginx_example_of_the_issue():
    got = via(
        x_forwarded_proto=["https"],
        x_forwarded_host=["example.com"],
        x_forwarded_for=["198.51.100.7"],
    )
    assert got == Peer("https", "example.com", "198.51.100.7", forwarded=True)


def test_proto_alone_changes_the_scheme_and_keeps_host_and_client():
    assert via(x_forwarded_proto=["https"]) == Peer(
        "https", "127.0.0.1:8080", "127.0.0.1", forwarded=True
    )


def test_the_right_most_untrusted_address_is_the_client():
    # A client may write anything on the left; our proxies append on the right.
    spoofed = ["1.2.3.4, 198.51.100.7, 127.0.0.2"]
    assert via(x_forwarded_for=spoofed).client == "198.51.100.7"
    # Several header lines are one list.
    assert via(x_forwarded_for=["1.2.3.4", "198.51.100.7"]).client == "198.51.100.7"


def test_a_chain_of_trusted_proxies_is_walked():
    trusted = TrustedProxies(("127.0.0.0/8", "10.0.0.0/8"))
    got = via(trusted=trusted, x_forwarded_for=["6.6.6.6, 198.51.100.7, 10.0.0.2, 10.0.0.1"])
    assert got.client == "198.51.100.7"
    # When every hop is trusted the left-most is the client.
    assert via(trusted=trusted, x_forwarded_for=["10.0.0.3, 10.0.0.2"]).client == "10.0.0.3"


def test_proto_and_host_lists_go_hop_by_hop_when_as_long_as_the_for_list():
    trusted = TrustedProxies(("127.0.0.0/8", "10.0.0.0/8"))
    got = via(
        trusted=trusted,
        x_forwarded_for=["198.51.100.7, 10.0.0.2"],
        x_forwarded_proto=["https, http"],
        x_forwarded_host=["example.com, lb.internal"],
    )
    assert got == Peer("https", "example.com", "198.51.100.7", forwarded=True)


def test_otherwise_only_the_right_most_proto_and_host_count():
    got = via(
        x_forwarded_for=["1.1.1.1, 198.51.100.7, 127.0.0.5"],
        x_forwarded_proto=["http, https"],
        x_forwarded_host=["evil.example, example.com"],
    )
    assert got == Peer("https", "example.com", "198.51.100.7", forwarded=True)


def test_a_non_address_for_entry_ends_the_walk():
    got = via(x_forwarded_for=["198.51.100.7, unknown"])
    assert got.client == "127.0.0.1"  # nothing better is known than the proxy
    assert via(x_forwarded_for=["198.51.100.7, garbage!!"]).client == "127.0.0.1"


@pytest.mark.parametrize("proto", ["ftp", "", "javascript", "https https"])
def test_a_proto_that_is_not_http_or_https_is_ignored(proto):
    assert via(x_forwarded_proto=[proto]).scheme == "http"


def test_ws_and_wss_are_http_and_https():
    assert via(x_forwarded_proto=["wss"]).scheme == "https"
    assert via(x_forwarded_proto=["WS"]).scheme == "http"


@pytest.mark.parametrize("host", ["a b", "a/b", "user@example.com", "x" * 300, "ex\u00e4mple.com"])
def test_a_malformed_forwarded_host_is_ignored(host):
    assert via(x_forwarded_host=[host]).host == "127.0.0.1:8080"


def test_parse_x_forwarded_shapes():
    assert parse_x_forwarded([], [], []) == []
    assert parse_x_forwarded([], ["https"], []) == [Hop(proto="https")]
    assert parse_x_forwarded(["a, b"], ["https"], []) == [Hop("a"), Hop("b", "https")]


# --- Forwarded (RFC 7239) -----------------------------------------------------------------


def test_forwarded_examples_of_rfc_7239():
    assert parse_forwarded(['for="_gazonk"']) == [Hop("_gazonk")]
    assert parse_forwarded(['For="[2001:db8:cafe::17]:4711"']) == [Hop("[2001:db8:cafe::17]:4711")]
    assert parse_forwarded(["for=192.0.2.60;proto=http;by=203.0.113.43"]) == [
        Hop("192.0.2.60", "http")
    ]
    assert parse_forwarded(["for=192.0.2.43, for=198.51.100.17"]) == [
        Hop("192.0.2.43"),
        Hop("198.51.100.17"),
    ]


def test_forwarded_quoted_strings_and_empty_elements():
    assert parse_forwarded(['for="a\\"b";host="example.com:8443"']) == [
        Hop('a"b', None, "example.com:8443")
    ]
    assert parse_forwarded(["for=1.2.3.4 ; proto=https , ;"]) == [
        Hop("1.2.3.4", "https"),
        Hop(),
    ]


@pytest.mark.parametrize(
    "header",
    [
        "for",
        "for=",
        "=1.2.3.4",
        'for="unterminated',
        'for="trailing\\',
        "for=1.2.3.4;for=5.6.7.8",
        "for=1.2.3.4 junk",
        "for=[::1]",  # brackets need quoting
        "for=a@b",
    ],
)
def test_malformed_forwarded_is_none(header):
    assert parse_forwarded([header]) is None


def test_forwarded_is_used_over_x_forwarded():
    got = via(
        forwarded=["for=198.51.100.7;proto=https;host=example.com"],
        x_forwarded_for=["203.0.113.1"],
        x_forwarded_proto=["http"],
    )
    assert got == Peer("https", "example.com", "198.51.100.7", forwarded=True)


def test_a_malformed_forwarded_falls_back_to_x_forwarded():
    got = via(forwarded=["for=1.2.3.4;;=x"], x_forwarded_for=["198.51.100.7"])
    assert got.client == "198.51.100.7"
    assert via(forwarded=["garbage here"]) == via()


def test_forwarded_multiple_hops_take_the_right_most_untrusted():
    got = via(
        forwarded=[
            'for=6.6.6.6;proto=http;host=evil.example, for="[2001:db8::7]:1234";proto=https;'
            "host=example.com, for=127.0.0.3"
        ]
    )
    assert got == Peer("https", "example.com", "2001:db8::7", forwarded=True)


def test_forwarded_element_without_for_keeps_the_proxy_as_client():
    assert via(forwarded=["proto=https;host=example.com"]) == Peer(
        "https", "example.com", "127.0.0.1", forwarded=True
    )


def test_a_very_long_chain_is_cut_to_the_right_most_hops():
    trusted = TrustedProxies(("127.0.0.0/8",))
    chain = "198.51.100.7, " + ", ".join(["127.0.0.9"] * 1000)
    got = via(trusted=trusted, x_forwarded_for=[chain])
    assert got.client == "127.0.0.9"  # the walk stops at MAX_HOPS, never reaching the left end


def test_random_headers_never_raise():
    rng = random.Random(7239)
    alphabet = 'for=proto;host,"\\[]:.1a _-\t'
    for _ in range(3000):
        header = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        got = via(
            forwarded=[header],
            x_forwarded_for=[header],
            x_forwarded_proto=[header],
            x_forwarded_host=[header],
        )
        assert got.scheme in ("http", "https")
