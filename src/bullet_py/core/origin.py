"""Same-origin and allow-list checks for browser requests (CSWSH and CSRF).

The content type cannot protect the endpoint: the original client POSTs with
``application/x-www-form-urlencoded``, a type any page may send cross-site
without a preflight. The ``Origin`` header (and ``Sec-Fetch-Site``) can.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case with the default port dropped, or None."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.path not in ("", "/"):
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def own_origin(scheme: str, host_header: str) -> str | None:
    """The origin a page served by this request's host would have."""
    return normalise_origin(f"{scheme}://{host_header}")


def origin_allowed(
    origin: str | None,
    *,
    sec_fetch_site: str | None,
    own: str | None,
    allowed: Collection[str] | None,
    allow_missing: bool,
) -> bool:
    """Decide whether a request from ``origin`` may use the endpoint.

    ``allowed`` None means same origin only. Matching is exact on scheme,
    host and port. ``Origin: null`` (sandboxed frames, file pages) never matches.
    """
    if origin is None:
        if sec_fetch_site is not None and sec_fetch_site.lower() == "cross-site":
            return False
        return allow_missing
    normal = normalise_origin(origin)
    if normal is None:
        return False
    if allowed is not None and normal in allowed:
        return True
    if sec_fetch_site is not None and sec_fetch_site.lower() == "cross-site":
        return False
    return own is not None and normal == own
