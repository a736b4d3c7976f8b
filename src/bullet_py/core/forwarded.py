"""The scheme, host and client address a trusted reverse proxy reports.

Behind a TLS-terminating proxy the request the endpoint sees is plain HTTP
from the proxy's address; the proxy says what the browser used in
``Forwarded`` (RFC 7239) or ``X-Forwarded-For|Proto|Host``. Anyone can send
those headers, so they count only when the TCP peer is a trusted proxy
(loopback by default, as uvicorn's ``forwarded_allow_ips``), and then only as
far back as the chain of trusted hops goes: walking the hops from the right,
the client is the first address that is not a trusted proxy.

Why not aio-libs' ``aiohttp-remotes``: its classes are app-wide middlewares
that clone the request for every route, while the endpoint needs the values
for its own URL only (an app may mount several endpoints with different
settings, or serve other routes unchanged). Its ``XForwardedFiltered`` does
not look at the TCP peer at all (any client's headers are believed), the
strict variants want the exact number of hops and answer 400 to a malformed
header, where a header we cannot read should just be ignored, and none of
them gives the values without rewriting the request. What is needed here is
a small pure function, so it is written here and unit-tested without a
server.

Nothing here raises on what a peer sends: a malformed header is ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import string
from collections.abc import Collection, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_HOPS = 32  # hops read from the right; a longer chain is cut (its left end is not ours)
MAX_HOST_LENGTH = 255 + 6  # a DNS name and ":65535"

_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "-._:[]")


@dataclasses.dataclass(frozen=True, slots=True)
class Peer:
    """What the endpoint takes as the request's origin: scheme, Host, client address."""

    scheme: str  # "http" or "https"
    host: str  # the Host header value (name[:port]); "" when none
    client: str | None  # the client's IP address, as text; None when unknown
    forwarded: bool = False  # a trusted proxy's headers were used


class TrustedProxies:
    """The addresses whose forwarding headers are believed ("*": every address)."""

    __slots__ = ("_memo", "any", "networks")

    MEMO_SIZE = 1024  # peers remembered (parsing an address costs more than the rest)

    def __init__(self, entries: Collection[str]) -> None:
        """Raise ValueError on an entry that is not an address, a network or "*"."""
        if isinstance(entries, str):
            raise ValueError("trusted_proxies must be a collection of strings, not one string")
        self.any = "*" in entries
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry != "*"
        )
        self._memo: dict[str, bool] = {}

    def __contains__(self, address: object) -> bool:
        if self.any:
            return True
        if isinstance(address, str):
            known = self._memo.get(address)
            if known is None:
                parsed = parse_address(address)
                known = parsed is not None and self._holds(parsed)
                if len(self._memo) >= self.MEMO_SIZE:
                    self._memo.clear()
                self._memo[address] = known
            return known
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return self._holds(address)
        return False

    def _holds(self, address: Address) -> bool:
        address = _unmapped(address)
        return any(address in network for network in self.networks)


def parse_address(text: str) -> Address | None:
    """An IP address from a ``for=`` or X-Forwarded-For entry, or None.

    Accepts ``192.0.2.1``, ``192.0.2.1:4711``, ``2001:db8::1`` and
    ``[2001:db8::1]:4711``; an obfuscated identifier or ``unknown`` is None.
    """
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return _unmapped(ipaddress.ip_address(text))
    except ValueError:
        return None


def _unmapped(address: Address) -> Address:
    """``::ffff:127.0.0.1`` (an IPv4 client on a dual-stack socket) as ``127.0.0.1``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclasses.dataclass(frozen=True, slots=True)
class Hop:
    """What one proxy reported: who connected to it, over what, for which host."""

    for_: str | None = None
    proto: str | None = None
    host: str | None = None


def parse_forwarded(values: Sequence[str]) -> list[Hop] | None:
    """The hops of the ``Forwarded`` header lines ``values``, left to right; None if malformed.

    RFC 7239: comma-separated elements of ``;``-separated ``name=value``
    pairs, each value a token or a quoted string; a name at most once per
    element. Unknown names are skipped.
    """
    text = ",".join(values)
    hops: list[Hop] = []
    pairs: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] not in ",;":
            start = i
            while i < n and text[i] in _TOKEN:
                i += 1
            name = text[start:i].lower()
            if not name or i >= n or text[i] != "=":
                return None
            i += 1
            if i < n and text[i] == '"':
                value, i = _quoted(text, i)
                if value is None:
                    return None
            else:
                start = i
                while i < n and text[i] in _TOKEN:
                    i += 1
                value = text[start:i]
                if not value:
                    return None
            if name in pairs:
                return None
            pairs[name] = value
            while i < n and text[i] in " \t":
                i += 1
        if i >= n or text[i] == ",":
            hops.append(Hop(pairs.get("for"), pairs.get("proto"), pairs.get("host")))
            pairs = {}
            if i >= n:
                return hops
            i += 1
        elif text[i] == ";":
            i += 1
        else:
            return None


def _quoted(text: str, i: int) -> tuple[str | None, int]:
    """The quoted string starting at ``text[i] == '"'``: its value and the index after it."""
    out: list[str] = []
    i += 1
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            if i + 1 >= n:
                return None, i
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    return None, i


def parse_x_forwarded(
    for_values: Sequence[str], proto_values: Sequence[str], host_values: Sequence[str]
) -> list[Hop]:
    """The hops that ``X-Forwarded-For``, ``-Proto`` and ``-Host`` describe, left to right.

    Proxies append to X-Forwarded-For; most set X-Forwarded-Proto and -Host
    once. Lists as long as X-Forwarded-For go hop by hop; otherwise only
    their right-most value counts, as said by the proxy next to us.
    """
    fors = _split(for_values)
    protos = _split(proto_values)
    hosts = _split(host_values)
    count = max(len(fors), 1)
    hops = [Hop(for_=f) for f in fors] or [Hop()]
    if len(protos) == count:
        hops = [dataclasses.replace(h, proto=p) for h, p in zip(hops, protos, strict=True)]
    elif protos:
        hops[-1] = dataclasses.replace(hops[-1], proto=protos[-1])
    if len(hosts) == count:
        hops = [dataclasses.replace(h, host=v) for h, v in zip(hops, hosts, strict=True)]
    elif hosts:
        hops[-1] = dataclasses.replace(hops[-1], host=hosts[-1])
    if not fors and not protos and not hosts:
        return []
    return hops


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def valid_host(host: str) -> bool:
    """A plausible ``name[:port]`` or ``[v6]:port``: no spaces, slashes or userinfo."""
    return 0 < len(host) <= MAX_HOST_LENGTH and _HOST_CHARS.issuperset(host)


def resolve(
    *,
    peer: str | None,
    scheme: str,
    host: str,
    trusted: TrustedProxies,
    forwarded: Sequence[str] = (),
    x_forwarded_for: Sequence[str] = (),
    x_forwarded_proto: Sequence[str] = (),
    x_forwarded_host: Sequence[str] = (),
) -> Peer:
    """The request's scheme, host and client, believing proxies only as far as trusted.

    ``peer`` is the TCP peer's address, ``scheme`` and ``host`` what the
    request itself says. ``Forwarded`` wins over X-Forwarded-* when both are
    present and it can be read. Walking the hops right to left, each hop was
    written by a trusted proxy (the first by the peer itself), so its proto
    and host replace what we had; its ``for`` becomes the client, and the
    walk goes on only while that client is a trusted proxy too. A ``for``
    that is not an address (``unknown``, an obfuscated name) ends the walk.
    """
    direct = Peer(scheme, host, peer)
    if peer is None or peer not in trusted:
        return direct
    if not (forwarded or x_forwarded_for or x_forwarded_proto or x_forwarded_host):
        return direct  # the common case of a direct client: nothing to parse
    hops = parse_forwarded(forwarded) if forwarded else None
    if not hops:
        hops = parse_x_forwarded(x_forwarded_for, x_forwarded_proto, x_forwarded_host)
    if not hops:
        return direct
    client = direct.client
    for hop in reversed(hops[-MAX_HOPS:]):
        proto = _SCHEMES.get((hop.proto or "").strip().lower())
        if proto is not None:
            scheme = proto
        if hop.host is not None and valid_host(hop.host.strip()):
            host = hop.host.strip()
        address = None if hop.for_ is None else parse_address(hop.for_)
        if address is None:
            break
        client = str(address)
        if address not in trusted:
            break
    return Peer(scheme, host, client, forwarded=True)
