"""The backend contract on the in-memory default (one process)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bullet_py import Broker
from tests.backends.contract import BackendContract


class TestMemoryBackend(BackendContract):
    workers = 1  # one process: every "worker" of the contract is this one

    @pytest.fixture
    def broker_factory(self) -> Callable[..., Broker | None]:
        return lambda **_: None
