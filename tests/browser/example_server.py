"""Run one example app, unchanged, with the browser test pages added at /__pages__/.

    python tests/browser/example_server.py --host 127.0.0.1 --port 8080 echo
    python tests/browser/example_server.py --port 8080 backbone/app

The example's name (its path under examples/, without .py) comes last; the
other arguments are the example's own.

The app is the one ``examples/<name>.py`` builds with its ``make_app()``; this
script only adds a static route for ``tests/browser/pages`` so that a test page
is a real document of the example's own origin (same origin as ``/bullet``, and
loopback to loopback as Chromium's local-network checks want), then serves it
the way the example script does (``listening on ...``, stops on SIGTERM/SIGINT).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from aiohttp import web

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent.parent / "examples"
PAGES_PREFIX = "/__pages__"


def add_pages(app: web.Application) -> None:
    """Serve ``tests/browser/pages`` under ``/__pages__/`` of ``app``."""
    app.router.add_static(PAGES_PREFIX, HERE / "pages", show_index=False, follow_symlinks=False)


def load_example(name: str) -> web.Application:
    """The application ``examples/<name>.py`` builds."""
    sys.path.insert(0, str(EXAMPLES))  # the examples import their _args helper
    module_name = "example_" + name.replace("/", "_")
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no example named {name!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # An example with a build_app() has an async make_app() for gunicorn (examples/backbone).
    factory = getattr(module, "build_app", None) or module.make_app
    app: web.Application = factory()
    return app


def main() -> None:
    name = sys.argv.pop()
    app = load_example(name)
    add_pages(app)

    from _args import parse  # examples/_args.py, on the path now

    from bullet_py.web.serve import run

    args = parse(__doc__ or "")
    run(app, args.host, args.port)


if __name__ == "__main__":
    main()
