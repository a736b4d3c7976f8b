"""aiohttp glue: mount a Bullet endpoint on an app in one line."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..backends.base import Broker
from ..config import Options
from ..handler import HandlerFactory
from . import logfilter
from .endpoint import Authorize, BulletEndpoint

ENDPOINTS = web.AppKey("bullet_py_endpoints", dict[str, BulletEndpoint])


def _js_dir() -> Path:
    """The browser files: bullet_py/static in a wheel, the top-level js/ in a source tree.

    pyproject.toml maps the package bullet_py.static onto js/, so an installed wheel has
    them beside the code; an editable install or ``PYTHONPATH=src`` runs the code from
    src/bullet_py, and js/ is two levels up.
    """
    package = Path(__file__).resolve().parent.parent
    installed = package / "static"
    if installed.is_dir():
        return installed
    return package.parent.parent / "js"


JS_DIR = _js_dir()


def setup(
    app: web.Application,
    path: str,
    handler: HandlerFactory,
    *,
    options: Options | None = None,
    broker: Broker | None = None,
    authorize: Authorize | None = None,
) -> BulletEndpoint:
    """Serve a Bullet endpoint at ``path`` of ``app``; returns it (its ``hub`` pushes).

    ``handler`` builds one handler per session (a Handler subclass works).
    ``authorize(request)``, plain or async, runs before any session or
    WebSocket upgrade exists, on every request that would create or use one
    (each poll and POST too): it returns the identity the handler reads as
    ``conn.identity``, or refuses by raising :class:`bullet_py.Refused` (or
    returning None: 401). Startup, graceful shutdown and cleanup are wired to
    the app's signals.
    """
    endpoint = BulletEndpoint(handler, options=options, broker=broker, authorize=authorize)
    logfilter.install()  # parser refusals: one WARNING line, not a traceback
    app.router.add_route("*", path, endpoint.handle)
    if ENDPOINTS not in app:
        app[ENDPOINTS] = {}
    app[ENDPOINTS][path] = endpoint

    async def on_startup(_: web.Application) -> None:
        await endpoint.startup()

    async def on_shutdown(_: web.Application) -> None:
        await endpoint.shutdown()

    async def on_cleanup(_: web.Application) -> None:
        await endpoint.cleanup()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return endpoint


def add_static_js(app: web.Application, prefix: str = "/js") -> None:
    """Serve the project's browser files (bullet.js, bert.js, stream.js, ...) under ``prefix``."""
    app.router.add_static(prefix, JS_DIR, show_index=False, follow_symlinks=False)


__all__ = ["ENDPOINTS", "JS_DIR", "Authorize", "BulletEndpoint", "add_static_js", "setup"]
