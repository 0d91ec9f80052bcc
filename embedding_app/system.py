"""Operational routes: a description at / and the health check."""

from __future__ import annotations

from flask import Blueprint

from .runtime import get_embedder

bp = Blueprint("system", __name__)


@bp.get("/")
def index():
    """What this server is and where to go next."""
    info = get_embedder().info
    return {"name": "embedding-server", "model": info.id, "dimensions": info.dimensions,
            "endpoints": ["/v1/embeddings", "/v1/models", "/health", "/openapi.json"], "docs": "/docs"}


@bp.get("/health")
def health():
    """200 once this worker has its model loaded."""
    info = get_embedder().info
    return {"status": "ok", "model": info.id, "mode": info.mode}
