import pytest

from bullet_py.core.origin import normalise_origin, origin_allowed, own_origin


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("http://Example.COM", "http://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("null", None),
        ("file://", None),
        ("http://a.com/path", None),
        ("http://a.com:99999", None),
        ("", None),
    ],
)
def test_normalise(raw, normal):
    assert normalise_origin(raw) == normal


def allowed(origin, *, own="http://127.0.0.1:8080", allow=None, missing=True, site=None):
    return origin_allowed(
        origin, sec_fetch_site=site, own=own, allowed=allow, allow_missing=missing
    )


def test_same_origin_only_by_default():
    assert allowed("http://127.0.0.1:8080")
    assert not allowed("https://evil.example")
    assert not allowed("null")
    assert not allowed("https://127.0.0.1:8080")  # other scheme
    assert not allowed("http://127.0.0.1:8081")  # other port


def test_missing_origin_is_a_setting():
    assert allowed(None)
    assert not allowed(None, missing=False)
    assert not allowed(None, site="cross-site")


def test_allow_list_matches_exactly():
    allow = frozenset({"https://app.example"})
    assert allowed("https://app.example", allow=allow)
    assert allowed("https://app.example:443", allow=allow)
    assert not allowed("https://app.example:8443", allow=allow)
    assert not allowed("http://app.example", allow=allow)


def test_sec_fetch_site_cross_site_wins_over_same_host_guess():
    assert not allowed("http://127.0.0.1:8080", site="cross-site")


def test_own_origin():
    assert own_origin("http", "127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert own_origin("https", "Example.com") == "https://example.com"
