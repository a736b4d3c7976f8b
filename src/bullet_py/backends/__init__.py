"""Backends that let sessions of several processes reach each other."""

from .base import Broker, Envelope, Kind
from .memory import MemoryBroker

__all__ = ["Broker", "Envelope", "Kind", "MemoryBroker"]
