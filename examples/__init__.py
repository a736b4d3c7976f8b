"""The example apps, importable from the repository root (for gunicorn)."""
