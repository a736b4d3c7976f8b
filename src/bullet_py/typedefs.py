"""Names shared by every layer."""

from __future__ import annotations

from typing import NewType

SessionId = NewType("SessionId", str)
