"""bullet_py: the Bullet wire protocol on aiohttp (WebSocket, event stream, long polling)."""

from .backends import Broker, Envelope, MemoryBroker
from .config import Options, Overflow
from .connection import CloseReason, Connection
from .core.negotiate import Transport
from .exceptions import (
    BackendError,
    BulletError,
    CodecError,
    DecodeError,
    EncodeError,
    ProtocolError,
    Refused,
    SessionNotFound,
)
from .handler import Handler, HandlerFactory
from .hub import Hub
from .web import ENDPOINTS, BulletEndpoint, add_static_js, setup

__version__ = "0.1.0"

__all__ = [
    "ENDPOINTS",
    "BackendError",
    "Broker",
    "BulletEndpoint",
    "BulletError",
    "CloseReason",
    "CodecError",
    "Connection",
    "DecodeError",
    "EncodeError",
    "Envelope",
    "Handler",
    "HandlerFactory",
    "Hub",
    "MemoryBroker",
    "Options",
    "Overflow",
    "ProtocolError",
    "Refused",
    "SessionNotFound",
    "Transport",
    "__version__",
    "add_static_js",
    "setup",
]
