import pytest
from multidict import CIMultiDict

from bullet_py.core.negotiate import Transport, accepts_event_stream, select_transport


def decide(method: str, **headers: str):
    return select_transport(
        method, CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
    )


@pytest.mark.parametrize("upgrade", ["websocket", "WebSocket", "WEBSOCKET", " websocket "])
def test_websocket_upgrade_any_case(upgrade):
    assert decide("GET", Upgrade=upgrade).transport is Transport.WEBSOCKET


@pytest.mark.parametrize("upgrade", ["h2c", "foo", "websocket, foo", "", "websocket2"])
def test_other_upgrades_get_501(upgrade):
    d = decide("GET", Upgrade=upgrade)
    assert (d.transport, d.status) == (Transport.REJECT, 501)


def test_upgrade_on_post_is_501():
    assert decide("POST", Upgrade="websocket").status == 501


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("text/event-stream", Transport.EVENTSOURCE),
        ("TEXT/EVENT-STREAM", Transport.EVENTSOURCE),
        ("text/event-stream;q=0", Transport.EVENTSOURCE),  # Bullet ignores q-values
        ("text/html, text/event-stream", Transport.EVENTSOURCE),
        ("text/plain, */*; q=0.01", Transport.POLL),  # the original poll
        ("*/*", Transport.POLL),
        ("text/*", Transport.POLL),
        (";;;,,", Transport.POLL),
        ("x" * 8192, Transport.POLL),
        ("text/event-streams", Transport.POLL),
    ],
)
def test_accept_variants(accept, expected):
    assert decide("GET", Accept=accept).transport is expected


def test_get_without_accept_is_poll():
    assert decide("GET").transport is Transport.POLL


def test_post_is_send():
    assert decide("POST").transport is Transport.SEND


@pytest.mark.parametrize(
    "method", ["PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "PROPFIND", "HEAD", "get"]
)
def test_other_methods_405(method):
    d = decide(method)
    assert (d.transport, d.status) == (Transport.REJECT, 405)


def test_options_is_left_to_the_preflight_check():
    assert decide("OPTIONS").transport is Transport.PREFLIGHT


def test_disabled_transports_are_refused_so_the_client_falls_back():
    h = CIMultiDict({"Upgrade": "websocket"})
    assert select_transport("GET", h, websocket=False).status == 501
    h = CIMultiDict({"Accept": "text/event-stream"})
    assert select_transport("GET", h, eventsource=False).status == 406
    assert select_transport("GET", CIMultiDict(), polling=False).status == 405
    assert select_transport("POST", CIMultiDict(), polling=False).transport is Transport.SEND
    assert select_transport("POST", CIMultiDict(), polling=False, eventsource=False).status == 405


def test_accepts_event_stream_helper():
    assert accepts_event_stream("a/b, text/event-stream ; q=1")
    assert not accepts_event_stream("")
