"""An OpenAI-compatible embedding server: Flask app factory."""

from __future__ import annotations

from flask import Flask

from .settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app: settings, error handlers and the blueprints."""
    from . import docs, routes, system
    from .errors import register_error_handlers

    settings = settings or get_settings()
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes  # larger bodies get 413 before parsing
    register_error_handlers(app)
    app.register_blueprint(routes.bp)
    app.register_blueprint(system.bp)
    app.register_blueprint(docs.bp)
    return app
