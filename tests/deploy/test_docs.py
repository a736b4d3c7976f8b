"""What the README's "Production" section shows is what tests/deploy runs."""

from __future__ import annotations

from tests.deploy.servers import NGINX_CONF, README, readme_gunicorn_command


def test_the_readme_shows_the_tested_nginx_config() -> None:
    assert NGINX_CONF.read_text(encoding="utf-8") in README.read_text(encoding="utf-8")


def test_the_readme_shows_the_gunicorn_command_of_the_issue() -> None:
    assert readme_gunicorn_command() == [
        "BULLET_REDIS_URL=redis://127.0.0.1:6379/0",
        "gunicorn",
        "examples.backbone.app:make_app",
        "--worker-class",
        "aiohttp.GunicornWebWorker",
        "--workers",
        "2",
        "--bind",
        "127.0.0.1:8080",
    ]
