"""Two network namespaces joined by a veth pair, for half-open TCP (docs/robustness.md item 69).

The test creates both namespaces itself, so no traffic leaves them: the
server's listening socket is made inside ``srv`` and the client's sockets
inside ``cli`` (a socket keeps the namespace it was created in, so a short
thread that ``setns()`` into the namespace makes it, and the event loop uses
it from then on). Pulling the client's link down makes its peer vanish with no
FIN and no RST, as a pulled cable or a Wi-Fi drop does.

Needs root and ``ip``; :func:`available` says why not otherwise, and the tests
skip with that reason.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
SERVER_IP = "10.213.71.1"
CLIENT_IP = "10.213.71.2"

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def available() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    name = f"bpyprobe{os.getpid()}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", name)
    return None


def netem_available() -> str | None:
    """None when ``tc qdisc ... netem`` works here, else why not."""
    reason = available()
    if reason:
        return reason
    if shutil.which("tc") is None:
        return "tc is not installed"
    with Pair() as pair:
        done = subprocess.run(
            ["ip", "netns", "exec", pair.cli, "tc", "qdisc", "add", "dev", pair.cli_dev,
             "root", "netem", "delay", "10ms"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        if done.returncode != 0:
            return f"tc netem is not available in this kernel: {done.stderr.strip()}"
    return None


def in_namespace(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that has joined network namespace ``name``."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            with open(f"/var/run/netns/{name}") as handle:
                if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {name}: {os.strerror(err)}")
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"netns-{name}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


class Pair:
    """Namespaces ``srv`` and ``cli`` joined by veth; removed on exit."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.srv = f"bpys{tag}"
        self.cli = f"bpyc{tag}"
        self.srv_dev = f"bpyvs{tag}"[:15]
        self.cli_dev = f"bpyvc{tag}"[:15]

    def __enter__(self) -> Pair:
        steps = [
            ("netns", "add", self.srv),
            ("netns", "add", self.cli),
            ("link", "add", self.srv_dev, "netns", self.srv, "type", "veth",
             "peer", "name", self.cli_dev, "netns", self.cli),
            ("-n", self.srv, "addr", "add", f"{SERVER_IP}/30", "dev", self.srv_dev),
            ("-n", self.cli, "addr", "add", f"{CLIENT_IP}/30", "dev", self.cli_dev),
            ("-n", self.srv, "link", "set", self.srv_dev, "up"),
            ("-n", self.cli, "link", "set", self.cli_dev, "up"),
            ("-n", self.srv, "link", "set", "lo", "up"),
            ("-n", self.cli, "link", "set", "lo", "up"),
        ]  # fmt: skip
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                self.__exit__()
                raise RuntimeError(f"ip {' '.join(step)}: {done.stderr.strip()}")
        return self

    def __exit__(self, *exc: object) -> None:
        _ip("netns", "del", self.cli)
        _ip("netns", "del", self.srv)

    def listen(self, port: int = 0) -> socket.socket:
        """A listening TCP socket on the server side of the pair."""

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((SERVER_IP, port))
            sock.listen(1024)
            sock.setblocking(False)
            return sock

        return in_namespace(self.srv, make)

    def client_socket(self) -> socket.socket:
        """A non-blocking TCP socket on the client side (connect it from the loop)."""

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            return sock

        return in_namespace(self.cli, make)

    def netem(self, *spec: str) -> None:
        """``tc qdisc add ... netem <spec>`` on the client's side of the pair."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.cli, "tc", "qdisc", "add", "dev", self.cli_dev,
             "root", "netem", *spec],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(done.stderr)

    def vanish(self) -> None:
        """The client's link goes down: its peer sees neither FIN nor RST."""
        done = _ip("-n", self.cli, "link", "set", self.cli_dev, "down")
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
