"""An OpenAI-compatible embedding server: Flask app factory."""

from __future__ import annotations

from flask import Flask

from embedding_app.config.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app: settings, error handlers and the blueprints."""
    # Imported here, not at the top: gunicorn.conf.py imports this package (settings) in the master, and
    # the blueprints import prometheus_client, which picks multiprocess mode on first import; that must
    # happen in the worker, after on_starting has set PROMETHEUS_MULTIPROC_DIR.
    from embedding_app.api import docs, rag_routes, routes, system
    from embedding_app.api.auth import require_api_key
    from embedding_app.api.errors import register_error_handlers

    settings = settings or get_settings()
    app = Flask(__name__)
    # werkzeug would answer /v1//embeddings with a 308 redirect, which a POST must not follow blindly:
    # a path with doubled slashes is simply unknown (404). Set before any rule is added.
    app.url_map.merge_slashes = False
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes  # larger bodies get 413 before parsing
    register_error_handlers(app)
    # Blueprints first: system's request timer must start before the API-key check, so 401s are timed too.
    app.register_blueprint(routes.bp)
    app.register_blueprint(rag_routes.bp)
    app.register_blueprint(system.bp)
    app.register_blueprint(docs.bp)
    if settings.api_keys:
        require_api_key(app, settings.api_keys)
    if settings.cors_allow_origins:
        from embedding_app.api.cors import enable_cors

        enable_cors(app, settings.cors_allow_origins, expose_headers=[routes.TRUNCATED_HEADER])
    return app
