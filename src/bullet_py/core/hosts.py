"""Which ``Host`` names the endpoint answers to (DNS rebinding).

The origin check compares a page's ``Origin`` with the request's own host, so
a page on ``evil.example`` whose name is made to resolve to 127.0.0.1 is "same
origin" with a local server: only checking the Host itself stops that. As in
Django's ``ALLOWED_HOSTS`` and Starlette's trusted-host middleware:

- ``allowed`` given: the host name (port ignored) must match one pattern:
  ``example.com`` exactly, ``.example.com`` that name and every subdomain,
  ``*.example.com`` subdomains only, ``*`` anything.
- ``allowed`` None and the server's own socket is on a loopback address:
  only loopback names (``localhost``, ``*.localhost``, 127.0.0.0/8, ``[::1]``).
- ``allowed`` None otherwise: any name (set ``allowed_hosts`` in production).

No I/O: the caller says whether its socket is on loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from .forwarded import parse_address, valid_host


def host_name(host: str) -> str | None:
    """A ``Host`` value's name: no port, lower case, no trailing dot; None if malformed."""
    host = host.strip()
    if not valid_host(host):
        return None
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :] if end > 0 else "?"
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        try:
            return "[" + str(ipaddress.IPv6Address(host[1:end])) + "]"
        except ValueError:
            return None
    name, sep, port = host.partition(":")
    if sep and not (port.isdigit() and len(port) <= 5):
        return None
    name = name.lower().rstrip(".")
    return name or None


def normalise_pattern(pattern: str) -> str:
    """A pattern as :func:`host_allowed` compares it: lower case, IPv6 in brackets."""
    pattern = pattern.strip().lower().rstrip(".")
    if pattern in ("*", "") or pattern.startswith((".", "*.")):
        return pattern
    if ":" in pattern and not pattern.startswith("["):
        try:
            return "[" + str(ipaddress.IPv6Address(pattern)) + "]"
        except ValueError:
            return pattern
    name = host_name(pattern)
    return pattern if name is None else name


def is_loopback_name(name: str) -> bool:
    """``localhost``, a ``*.localhost`` name (RFC 6761), or a loopback address literal."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = parse_address(name)
    return address is not None and address.is_loopback


def is_loopback_socket(sockname: object) -> bool:
    """Whether a socket's own address (``get_extra_info("sockname")``) is loopback."""
    if not isinstance(sockname, tuple | list) or not sockname:
        return False
    address = parse_address(str(sockname[0]))
    return address is not None and address.is_loopback


def host_allowed(host: str | None, allowed: Collection[str] | None, *, loopback: bool) -> bool:
    """Whether a request for ``host`` (a Host header value) may be served.

    ``allowed`` holds patterns already normalised (:func:`normalise_pattern`).
    A request without a Host (HTTP/1.0 tools) names nothing to misdirect and
    passes; a malformed one never does.
    """
    if host is None:
        return True
    name = host_name(host)
    if name is None:
        return False
    if allowed is None:
        return not loopback or is_loopback_name(name)
    for pattern in allowed:
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
        if pattern.startswith(".") and (name == pattern[1:] or name.endswith(pattern)):
            return True
    return False
