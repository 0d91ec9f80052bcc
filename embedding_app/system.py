"""Operational routes: a description at /, the health check and Prometheus metrics for every request."""

from __future__ import annotations

import time

from flask import Blueprint, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from . import metrics
from .runtime import get_embedder

bp = Blueprint("system", __name__)


@bp.get("/")
def index():
    """What this server is and where to go next."""
    info = get_embedder().info
    return {"name": "embedding-server", "model": info.id, "dimensions": info.dimensions,
            "endpoints": ["/v1/embeddings", "/v1/models", "/health", "/metrics", "/openapi.json"], "docs": "/docs"}


@bp.get("/health")
def health():
    """200 once this worker has its model loaded."""
    info = get_embedder().info
    return {"status": "ok", "model": info.id, "mode": info.mode}


@bp.get("/metrics")
def prometheus_metrics():
    """Request, embedding and worker metrics of all gunicorn workers, in Prometheus text format."""
    return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)


@bp.before_app_request
def _start_timer() -> None:
    g.started = time.perf_counter()


@bp.after_app_request
def _count_request(response: Response) -> Response:
    # The URL rule, not the path, keeps label values bounded: 404s for any path share "unmatched".
    route = request.url_rule.rule if request.url_rule else "unmatched"
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    metrics.observe_request(route, request.method, response.status_code, elapsed)
    return response
