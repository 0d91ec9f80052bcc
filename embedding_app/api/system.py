"""Operational routes: a description at /, the health check and Prometheus metrics for every request."""

from __future__ import annotations

import time

from flask import Blueprint, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from embedding_app.runtime import metrics
from embedding_app.runtime.loading import get_registry
from embedding_app.runtime.registry import Registry, ServedModel

from .model_schemas import Compute, Health, ModelHealth, ServerInfo

bp = Blueprint("system", __name__)


@bp.get("/")
def index():
    """What this server is and where to go next."""
    registry = get_registry()
    first = registry.models[0]
    return ServerInfo(name="embedding-server", model=first.id, dimensions=first.embedder.info.dimensions or None,
                      models=registry.ids(), docs="/docs",
                      endpoints=["/v1/embeddings", "/v1/models", "/v1/rerank", "/v2/embed", "/v2/rerank", "/embed",
                                 "/rerank", "/tokenize", "/detokenize", "/health", "/metrics",
                                 "/openapi.json"]).model_dump()


def _model_health(model: ServedModel) -> ModelHealth:
    info, source = model.embedder.info, model.source
    return ModelHealth(id=model.id, aliases=list(source.aliases), mode=info.mode, capabilities=[info.task],
                       dimensions=info.dimensions or None,
                       max_tokens=info.max_tokens, prompts=list(source.prompts),
                       default_prompt_name=source.default_prompt_name, compute=Compute.of(model.embedder.choice))


def health_body(registry: Registry) -> dict:
    """/health's body: the served models, what each one is."""
    models = [_model_health(model) for model in registry.models]
    return Health(status="ok", model=models[0].id, mode=models[0].mode, models=models).model_dump()


@bp.get("/health")
def health():
    """200 once this worker has its models loaded (EMBEDDING_SERVER_HEALTH_PORT answers even while it computes)."""
    return health_body(get_registry())


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
