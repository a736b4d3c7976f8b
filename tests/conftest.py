"""Suite-wide settings: which event loop the tests run on.

``BULLET_TEST_LOOP=uvloop`` runs every asyncio test on uvloop, the loop
``bullet_py.web.serve.run`` picks when it is installed; without it the tests
run on asyncio's own loop (pytest-asyncio wants the hook absent, not empty).
CI runs the suite on both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import pytest

if os.environ.get("BULLET_TEST_LOOP") == "uvloop":

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, Callable[[], Any]]:
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
