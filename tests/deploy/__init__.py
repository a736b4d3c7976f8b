"""The production path: gunicorn workers, nginx with TLS in front (README "Production")."""
