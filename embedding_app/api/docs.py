"""API documentation: the OpenAPI document at /openapi.json and Swagger UI at /docs, with no CDN."""

from __future__ import annotations

from functools import cache
from importlib.util import find_spec
from pathlib import Path

import orjson
from flask import Blueprint, Response, current_app, render_template_string

from embedding_app.runtime.loading import get_registry

from .openapi import build_openapi

# Swagger UI's JS and CSS ship inside the flask-openapi3-swagger wheel, so the page works offline.
SWAGGER_DIR = Path(find_spec("flask_openapi3_swagger").origin).parent / "templates" / "swagger"
bp = Blueprint("docs", __name__, static_folder=SWAGGER_DIR, static_url_path="/docs/static")

# validatorUrl null: Swagger UI would otherwise send the document to an online validator.
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>embedding-server API</title>
<link rel="icon" href="{{ url_for('docs.static', filename='images/swagger.svg') }}">
<link rel="stylesheet" href="{{ url_for('docs.static', filename='css/swagger-ui.css') }}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{{ url_for('docs.static', filename='js/swagger-ui-bundle.js') }}"></script>
<script>
window.ui = SwaggerUIBundle({url: "{{ url_for('docs.openapi_json') }}", dom_id: "#swagger-ui", validatorUrl: null,
                             deepLinking: true, displayRequestDuration: true});
</script>
</body>
</html>
"""


@cache
def _document(registry, settings) -> bytes:
    """The serialised document; it depends only on the loaded models and the settings, so it is built once."""
    document = build_openapi(registry.models, settings, registry.models[0].embedder.tokenize(["hello world"])[0])
    return orjson.dumps(document)  # orjson keeps the paths in order


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 document, generated from the request and response models."""
    return Response(_document(get_registry(), current_app.config["SETTINGS"]), mimetype="application/json")


@bp.get("/docs")
def swagger_ui():
    """Interactive API documentation (Swagger UI)."""
    return render_template_string(PAGE)
