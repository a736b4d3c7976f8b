"""Command-line arguments, logging and metrics shared by the example scripts."""

from __future__ import annotations

import argparse
import logging
import os

from aiohttp import web


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument("--log-level", default="WARNING", help="logging level")
    args = parser.parse_args()
    configure_logging(args.log_level)
    return args


def configure_logging(level: str) -> None:
    """Plain text lines, or one JSON object per line when ``BULLET_LOG_JSON=1``."""
    if os.environ.get("BULLET_LOG_JSON") == "1":
        from bullet_py.logs import JsonFormatter

        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level.upper(), handlers=[handler])
    else:
        logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s %(message)s")


def add_metrics(app: web.Application) -> None:
    """Serve ``/metrics`` when prometheus-client is installed (the ``metrics`` extra)."""
    try:
        from bullet_py import metrics
    except ImportError:
        logging.getLogger("examples").warning(
            "metrics off: pip install 'bullet_py[metrics]' to serve /metrics"
        )
        return
    metrics.add_metrics_route(app)
