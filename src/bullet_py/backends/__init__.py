"""Backends that let sessions of several processes reach each other.

The Redis backend lives in :mod:`bullet_py.backends.redis` and is imported
from there only (it needs the ``redis`` extra); nothing here imports it.
"""

from .base import Broker, Envelope, Kind, LocalSessions, Located, Placement, SessionStore, Taken
from .memory import MemoryBroker

__all__ = [
    "Broker",
    "Envelope",
    "Kind",
    "LocalSessions",
    "Located",
    "MemoryBroker",
    "Placement",
    "SessionStore",
    "Taken",
]
