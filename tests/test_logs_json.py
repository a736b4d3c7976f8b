"""Structured logs: the fields ride on the record, and JsonFormatter writes them as keys."""

from __future__ import annotations

import io
import json
import logging

import pytest

from bullet_py import logs


@pytest.fixture
def captured():
    """The bullet_py logger's lines, formatted by JsonFormatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("bullet_py")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logs._counts.clear()  # no rate window left over from other tests
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logs._counts.clear()


def test_reject_fields_are_json_keys(captured):
    logs.reject("too_big", "message_size", transport="websocket", session_id="abc", length=9)
    (line,) = captured()
    assert line["level"] == "WARNING"
    assert line["logger"] == "bullet_py"
    assert line["event"] == "too_big"
    assert line["reason"] == "message_size"
    assert line["transport"] == "websocket"
    assert line["session"] == logs.session_hash("abc")
    assert line["length"] == 9
    # The human-readable text is unchanged.
    assert line["message"] == (
        f"event=too_big reason=message_size transport=websocket "
        f"session={logs.session_hash('abc')} length=9"
    )
    assert line["time"].endswith("Z")


def test_fields_that_json_cannot_hold_become_text(captured):
    logs.log_event(logging.INFO, "backend_unavailable", during="sweep", error=OSError("down"))
    (line,) = captured()
    assert line["error"] == "down"
    assert line["during"] == "sweep"


def test_a_field_named_like_a_base_key_does_not_replace_it(captured):
    logs.log_event(logging.INFO, "odd", message="from the field", level=3)
    (line,) = captured()
    assert line["message"] == "event=odd message=from the field level=3"
    assert line["field_message"] == "from the field"
    assert line["level"] == "INFO"
    assert line["field_level"] == 3


def test_the_suppression_summary_is_structured_too(captured, monkeypatch):
    monkeypatch.setattr(logs, "_PER_WINDOW", 1)
    for _ in range(3):
        logs.log_event(logging.INFO, "burst", n=1)
    logs._counts["burst"][0] -= logs._WINDOW  # the window is over
    logs.log_event(logging.INFO, "burst", n=2)
    lines = captured()
    assert [line["message"] for line in lines] == [
        "event=burst n=1",
        "event=burst suppressed=2",
        "event=burst n=2",
    ]
    assert lines[1]["event"] == "burst"
    assert lines[1]["suppressed"] == 2


def test_plain_records_and_tracebacks(captured):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("bullet_py").exception("handler failed")
    (line,) = captured()
    assert line["message"] == "handler failed"
    assert "ValueError: boom" in line["exc_info"]
    assert "event" not in line


def test_every_recorder_method_is_a_no_op():
    recorder = logs.NO_RECORDER
    assert recorder.times_handlers is False
    recorder.opened("websocket")
    recorder.closed("websocket")
    recorder.message_in("poll")
    recorder.message_out("poll", 3)
    recorder.refused(405, "status_405")
    recorder.overflow("close")
    recorder.handler_seconds("on_message", 0.1)
    recorder.resumed("websocket")


def test_event_hooks_see_events_below_the_level_and_over_the_rate(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(logs, "event_hooks", [seen.append])
    logger = logging.getLogger("bullet_py")
    monkeypatch.setattr(logger, "level", logging.CRITICAL)
    for _ in range(logs._PER_WINDOW + 5):
        logs.log_event(logging.INFO, "quiet")
    assert seen == ["quiet"] * (logs._PER_WINDOW + 5)
