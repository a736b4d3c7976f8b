"""The production path as processes: the README's gunicorn command, and nginx in front of it.

Each runs on free ports of 127.0.0.1, in its own session (process group), and is
stopped, then killed if it lingers, when its context ends. Nothing here touches
a system service: nginx gets its own configuration, prefix and logs in a temp dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from tests.processes import ROOT, free_port

README = ROOT / "README.md"
NGINX_CONF = ROOT / "examples" / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

#: Every request in gunicorn's access log: worker pid, request line, status, cookies.
ACCESS_LOG = '--access-logfile - --access-logformat \'%P "%r" %s "%{Cookie}i"\''
ACCESS_LINE = re.compile(r'^<(\d+)> "(\w+) (\S+) HTTP/[\d.]+" (\d+) "(.*)"$')


def gunicorn_settings() -> str:
    """GUNICORN_CMD_ARGS for the tests: the access log, and no control socket in $HOME."""
    from gunicorn import config

    if hasattr(config, "ControlSocket"):  # the gunicorn versions that have one
        return ACCESS_LOG + " --no-control-socket"
    return ACCESS_LOG


def readme_gunicorn_command() -> list[str]:
    """The README's gunicorn command line, as words (``BULLET_REDIS_URL=... gunicorn ...``)."""
    found = [
        line.strip()
        for line in README.read_text(encoding="utf-8").splitlines()
        if line.startswith("BULLET_REDIS_URL=") and " gunicorn " in line
    ]
    assert len(found) == 1, f"README shows the gunicorn command once, found {found}"
    return shlex.split(found[0])


def gunicorn_executable() -> str:
    """The gunicorn next to the interpreter running the tests (the project's .venv)."""
    beside = Path(sys.executable).parent / "gunicorn"
    if beside.exists():
        return str(beside)
    found = shutil.which("gunicorn")
    assert found is not None, "gunicorn is missing: run scripts/setup.sh"
    return found


class Process:
    """A server process whose output (stdout and stderr, merged) is kept line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output: list[str] = []
        self._new = asyncio.Event()
        self._drain = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            self.output.append(raw.decode(errors="replace").rstrip("\n"))
            self._new.set()
        self._new.set()

    async def wait_output(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        """Wait until ``count`` lines match ``pattern`` (a regular expression); return them."""
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                lines = [line for line in self.output if regex.search(line)]
                if len(lines) >= count:
                    return lines
                if self.proc.returncode is not None and self._drain.done():
                    raise AssertionError("exited:\n" + "\n".join(self.output))
                self._new.clear()
                await self._new.wait()

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``, wait for the exit status and the last of the output."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            status = await self.proc.wait()
            await self._drain
        return status

    async def kill(self) -> None:
        """End the process and anything it started (its own process group)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        self._drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._drain


class Gunicorn(Process):
    port: int
    base: str
    worker_pids: list[int]

    def served(self) -> list[tuple[int, str, str, int, str]]:
        """The access log: (worker pid, method, target, status, cookie header) per request."""
        rows = []
        for line in self.output:
            m = ACCESS_LINE.match(line)
            if m:
                rows.append((int(m[1]), m[2], m[3], int(m[4]), m[5]))
        return rows


@contextlib.asynccontextmanager
async def run_gunicorn(
    redis_url: str,
    *,
    port: int | None = None,
    environ: Mapping[str, str] | None = None,
    worker_class: str | None = None,
) -> AsyncIterator[Gunicorn]:
    """The README's command from the repository root, Redis and port substituted.

    ``environ`` adds variables (``PROMETHEUS_MULTIPROC_DIR``), as a shell would;
    ``worker_class`` replaces the command's (the README's uvloop variant).
    """
    port = port or free_port()
    words = readme_gunicorn_command()
    env = dict(os.environ, PYTHONUNBUFFERED="1", GUNICORN_CMD_ARGS=gunicorn_settings())
    env.update(environ or {})
    while "=" in words[0]:  # VAR=value before the command
        name, _, _value = words.pop(0).partition("=")
        env[name] = redis_url if name == "BULLET_REDIS_URL" else _value
    assert words[0] == "gunicorn", words
    words[0] = gunicorn_executable()
    bind = words.index("--bind")
    words[bind + 1] = f"127.0.0.1:{port}"
    if worker_class is not None:
        words[words.index("--worker-class") + 1] = worker_class
    proc = await asyncio.create_subprocess_exec(
        *words,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    server = Gunicorn(proc)
    try:
        workers = int(words[words.index("--workers") + 1])
        booted = await server.wait_output(r"Booting worker with pid: \d+", count=workers)
        server.port = port
        server.base = f"http://127.0.0.1:{port}"
        server.worker_pids = [int(line.rsplit(" ", 1)[1]) for line in booted]
        yield server
    finally:
        await server.kill()


# --- nginx ---------------------------------------------------------------------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and localhost."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            OPENSSL,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def render_site(*, https_port: int, http_port: int, upstream: str, cert: Path, key: Path) -> str:
    """examples/deploy/nginx.conf with the test's ports, certificate and upstream."""
    text = NGINX_CONF.read_text(encoding="utf-8")
    for old, new in {
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "/etc/ssl/certs/example.com.pem": str(cert),
        "/etc/ssl/private/example.com.key": str(key),
        "server 127.0.0.1:8080;": f"server {upstream};",
    }.items():
        assert text.count(old) == 1, f"{NGINX_CONF.name} should hold {old!r} once"
        text = text.replace(old, new)
    return text


#: The rest of a whole nginx.conf around the site (what /etc/nginx/nginx.conf holds).
NGINX_MAIN = """\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr notice;  # to the test, which waits for its workers
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
"""


class Nginx(Process):
    https_port: int
    http_port: int
    base: str
    prefix: Path


def prepare_nginx(prefix: Path, upstream: str) -> tuple[int, int]:
    """Certificate, site and main config under ``prefix``, checked by ``nginx -t``; the ports."""
    prefix.mkdir(parents=True, exist_ok=True)
    cert, key = make_certificate(prefix)
    https_port, http_port = free_port(), free_port()
    site = render_site(
        https_port=https_port, http_port=http_port, upstream=upstream, cert=cert, key=key
    )
    (prefix / "site.conf").write_text(site, encoding="utf-8")
    (prefix / "nginx.conf").write_text(NGINX_MAIN.format(prefix=prefix), encoding="utf-8")
    check = subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    return https_port, http_port


@contextlib.asynccontextmanager
async def run_nginx(prefix: Path, upstream: str) -> AsyncIterator[Nginx]:
    """nginx with the repository's site config, TLS on a free port of 127.0.0.1."""
    https_port, http_port = prepare_nginx(prefix, upstream)
    proc = await asyncio.create_subprocess_exec(
        NGINX,
        "-p",
        str(prefix),
        "-c",
        str(prefix / "nginx.conf"),
        "-e",
        "stderr",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    server = Nginx(proc)
    server.https_port, server.http_port = https_port, http_port
    server.base = f"https://127.0.0.1:{https_port}"
    server.prefix = prefix
    try:
        # Its sockets listen before it starts a worker, and it says so on the error log.
        await server.wait_output(r"start worker process \d+")
        yield server
    finally:
        await server.kill()
