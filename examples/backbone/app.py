"""The seed's Backbone app: one ``character`` model shared by every open page.

    python examples/backbone/app.py --host 127.0.0.1 --port 8080

Several workers on one port, under gunicorn (run from the repository root)::

    BULLET_REDIS_URL=redis://127.0.0.1:6379/0 gunicorn examples.backbone.app:make_app \\
        --worker-class aiohttp.GunicornWebWorker --workers 2 --bind 127.0.0.1:8080

With ``BULLET_REDIS_URL`` set (under gunicorn or not), sessions, pushes and
the character live in that Redis, shared by every worker; without it, in
this process's memory. ``BULLET_ALLOWED_HOSTS=example.com,www.example.com``
names the hosts a proxy may forward (by default only loopback names).

Routes:

- ``/``: ``index.html`` of this directory (a placeholder page until it exists);
- ``/app.js``: ``app.js`` of this directory;
- ``/vendor/jquery.js``, ``/vendor/underscore.js``, ``/vendor/backbone.js``:
  the libraries npm installs here from ``package.json`` (``scripts/setup.sh``
  runs it; nothing third-party is vendored in the repository);
- ``/js/...``: the project's browser files (bullet.js, bert.js, stream.js,
  backbone-bullet.js);
- ``/bullet``: the Bullet endpoint, with a Stream :class:`~bullet_py.router.Router`;
- ``/metrics``: Prometheus metrics, when prometheus-client is installed.

The model ``character`` lives in memory (one per app). ``read`` answers the
current state; ``update`` and ``patch`` merge the given fields (``create``
too: there is only one character); the caller gets ``{sync, ok, Props}`` as
its reply and every *other* open page gets the same term as a push. Unknown
fields or wrong types give ``{sync, error, bad_field}``; ``delete`` is not
defined, so it gives ``{error, unknown_method, "delete"}``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bullet_py import Broker, Options, add_static_js, setup
from bullet_py.router import Context, Router, error, ok
from bullet_py.web.serve import run

if TYPE_CHECKING:
    from bullet_py.backends.redis import RedisBackend  # needs redis: imported when used

HERE = Path(__file__).resolve().parent

#: Field name → (type, check): what a page may set.
FIELDS: dict[str, tuple[type, Any]] = {
    "id": (int, lambda v: v == 1),  # one character, id fixed
    "name": (str, lambda v: 0 < len(v) <= 100),
    "class": (str, lambda v: 0 < len(v) <= 40),
    "level": (int, lambda v: 1 <= v <= 99),
    "hp": (int, lambda v: 0 <= v <= 9999),
}

INITIAL: dict[str, Any] = {"id": 1, "name": "Zoë", "class": "wizard", "level": 1, "hp": 10}

PLACEHOLDER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>bullet_py Backbone example</title></head>
<body>
<h1>bullet_py Backbone example</h1>
<p>The page (<code>examples/backbone/index.html</code>) is not there yet.
The endpoint is <code>/bullet</code>; the browser files are under
<a href="/js/stream.js"><code>/js/</code></a>.</p>
</body></html>
"""


class Character:
    """One in-memory character; every change is pushed to the other open pages.

    All methods run on the event loop without awaiting, so a change and its
    broadcast happen as one step: no two sessions interleave inside one.
    """

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self.state: dict[str, Any] = dict(INITIAL if initial is None else initial)

    def read(self, ctx: Context, props: dict[str, Any]) -> Any:
        return ok(dict(self.state))

    def update(self, ctx: Context, props: dict[str, Any]) -> Any:
        return self._change(ctx, props)

    def patch(self, ctx: Context, props: dict[str, Any]) -> Any:
        return self._change(ctx, props)

    def create(self, ctx: Context, props: dict[str, Any]) -> Any:
        return self._change(ctx, props)  # one character: saving a new one replaces it

    def _change(self, ctx: Context, props: dict[str, Any]) -> Any:
        for key, value in props.items():
            spec = FIELDS.get(key)
            if spec is None or type(value) is not spec[0] or not spec[1](value):
                return error("bad_field")
        self.state.update(props)
        reply = ok(dict(self.state))
        ctx.broadcast(reply)  # every other open page: {sync, ok, Props}
        return reply


async def _index(request: web.Request) -> web.StreamResponse:
    page = HERE / "index.html"
    if page.is_file():
        return web.FileResponse(page)
    return web.Response(text=PLACEHOLDER, content_type="text/html")


async def _app_js(request: web.Request) -> web.StreamResponse:
    script = HERE / "app.js"
    if script.is_file():
        return web.FileResponse(script)
    raise web.HTTPNotFound()


#: ``/vendor/<name>`` → the file npm installed under ``node_modules/`` here.
VENDOR = {
    "jquery.js": "jquery/dist/jquery.js",
    "underscore.js": "underscore/underscore.js",
    "backbone.js": "backbone/backbone.js",
}


async def _vendor(request: web.Request) -> web.StreamResponse:
    wanted = VENDOR.get(request.match_info["name"])
    if wanted is None:
        raise web.HTTPNotFound()
    return web.FileResponse(HERE / "node_modules" / wanted)  # 404 until npm has run


def build_app(
    *,
    initial: dict[str, Any] | None = None,
    options: Options | None = None,
    broker: Broker | None = None,
    character: Character | None = None,
) -> web.Application:
    """The example app; each call has its own character (tests start from a clean state).

    ``broker`` and ``character`` let several workers share pushes and the
    character's state (:func:`redis_app` passes Redis-backed ones).
    """
    router = Router()
    router.model("character", character if character is not None else Character(initial))
    app = web.Application()
    app.router.add_get("/", _index)
    app.router.add_get("/app.js", _app_js)
    setup(app, "/bullet", router, options=options, broker=broker)
    add_static_js(app)
    app.router.add_get("/vendor/{name}", _vendor)
    _add_metrics(app)
    return app


class SharedCharacter(Character):
    """The character's fields in one Redis hash (JSON values), the same for every worker.

    A change and the state it replies with are one transaction, so each
    reply and push carries a state that existed. Two changes made at the
    same moment through different workers are both applied; their pushes
    may reach a page in either order (docs/cluster.md).
    """

    def __init__(self, url: str, key: str) -> None:
        super().__init__()
        self.key = key
        self.url = url
        self._redis: Any = None

    def _client(self) -> Any:
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self.url, decode_responses=True)
        return self._redis

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        async with self._client().pipeline(transaction=True) as pipe:
            for field, value in self.state.items():  # the initial state, once
                pipe.hsetnx(self.key, field, json.dumps(value))
            if props:
                pipe.hset(self.key, mapping={k: json.dumps(v) for k, v in props.items()})
            pipe.hgetall(self.key)
            *_, raw = await pipe.execute()
        return {field: json.loads(value) for field, value in raw.items()}

    async def read(self, ctx: Context, props: dict[str, Any]) -> Any:  # type: ignore[override]
        return ok(await self._apply({}))

    async def _change(self, ctx: Context, props: dict[str, Any]) -> Any:  # type: ignore[override]
        for key, value in props.items():
            spec = FIELDS.get(key)
            if spec is None or type(value) is not spec[0] or not spec[1](value):
                return error("bad_field")
        reply = ok(await self._apply(props))
        ctx.broadcast(reply)  # every other open page, on every worker
        return reply


def redis_app(broker: RedisBackend, *, options: Options | None = None) -> web.Application:
    """The app with its sessions, pushes and character in the broker's Redis (any worker)."""
    character = SharedCharacter(broker.url, f"{broker.prefix}:character")
    app = build_app(broker=broker, character=character, options=options)

    async def close_character(_: web.Application) -> None:
        await character.close()

    app.on_cleanup.append(close_character)
    return app


def app_from_env(environ: Mapping[str, str] = os.environ) -> web.Application:
    """The app as the environment asks: Redis at ``BULLET_REDIS_URL`` if set.

    ``BULLET_ALLOWED_HOSTS`` (comma-separated) names the hosts served: an app
    bound to loopback answers only loopback names unless told (``Options.allowed_hosts``).
    """
    hosts = [h.strip() for h in environ.get("BULLET_ALLOWED_HOSTS", "").split(",") if h.strip()]
    options = Options(allowed_hosts=hosts) if hosts else None
    url = environ.get("BULLET_REDIS_URL")
    if url:
        from bullet_py.backends.redis import RedisBackend  # the redis extra

        return redis_app(RedisBackend(url), options=options)
    return build_app(options=options)


async def make_app() -> web.Application:
    """The factory gunicorn's ``aiohttp.GunicornWebWorker`` calls in each worker.

    That worker takes an Application or a coroutine function returning one
    (a plain function is refused), and calls it inside the worker's event loop.
    """
    return app_from_env()


def _add_metrics(app: web.Application) -> None:
    """Serve ``/metrics`` when prometheus-client is installed (the ``metrics`` extra)."""
    try:
        from bullet_py import metrics
    except ImportError:
        logging.getLogger("examples").warning(
            "metrics off: pip install 'bullet_py[metrics]' to serve /metrics"
        )
        return
    metrics.add_metrics_route(app)


def main() -> None:
    sys.path.insert(0, str(HERE.parent))  # examples/_args.py, shared by the examples
    from _args import parse

    args = parse(__doc__ or "")
    run(app_from_env(), args.host, args.port)


if __name__ == "__main__":
    main()
