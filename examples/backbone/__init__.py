"""The Backbone example: ``app.make_app`` is the gunicorn factory."""
