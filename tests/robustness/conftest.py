"""Options and fixtures of the robustness suite.

``pytest tests/robustness --robustness-long`` (or ``BULLET_ROBUSTNESS_LONG=1``)
runs the long versions: full-size floods, 5,000 parked polls, the churn soak
for 5 minutes. Without it every item runs in a short version sized for CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bullet_py import logs


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--robustness-long",
        action="store_true",
        default=False,
        help="run the long robustness versions (floods at full size, soak); see docs/robustness.md",
    )


def long_run(config: pytest.Config) -> bool:
    return bool(config.getoption("--robustness-long")) or os.environ.get(
        "BULLET_ROBUSTNESS_LONG", ""
    ) not in ("", "0")


#: The long versions' time limit per test (the churn soak alone runs 5 minutes).
LONG_TIMEOUT = 1800


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not long_run(config):
        return
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUT))


@pytest.fixture
def long(request: pytest.FixtureRequest) -> bool:
    """True when the long versions were asked for."""
    return long_run(request.config)


@pytest.fixture
def scale(long: bool):  # type: ignore[no-untyped-def]
    """``scale(short, full)``: the size for this run."""

    def pick(short: int, full: int) -> int:
        return full if long else short

    return pick


@pytest.fixture(autouse=True)
def fresh_log_budget(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """log_event is rate-limited per event name; give each test a full budget."""
    monkeypatch.setattr(logs, "_counts", {})
    yield
