"""The OpenAI-compatible routes: embeddings and models. Thin: parse, call the service, respond."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from .deadline import START_HEADER, Budget, ClientGone, parse_start
from .errors import ApiError
from .parsing import parse_request
from .runtime import get_registry
from .schemas import ModelCard, ModelList
from .service import embed_request, find_model

log = logging.getLogger(__name__)
bp = Blueprint("openai", __name__)
# Set when TRUNCATE=true cut some inputs to the model's maximum; the body keeps OpenAI's shape.
TRUNCATED_HEADER = "X-Truncated-Inputs"


def _model_card(model) -> dict:
    return ModelCard(id=model.id, created=model.source.created, owned_by="embedding-server").model_dump()


def _read_body() -> bytes:
    """The raw body; a chunked one that reaches the limit gets 413 too (werkzeug just stops reading it)."""
    body = request.get_data(cache=False)
    if request.content_length is None and len(body) >= current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()
    return body


@bp.post("/v1/embeddings")
@bp.post("/embeddings")
def create_embeddings():
    """Embed the request's input (OpenAI POST /v1/embeddings)."""
    if request.mimetype not in ("", "application/json"):
        raise ApiError(415, f"Content-Type must be application/json, not {request.mimetype}",
                       code="unsupported_media_type")
    settings = current_app.config["SETTINGS"]
    # The budget counts from when the proxy passed the request on: time queued for a worker is part of it.
    budget = Budget(parse_start(request.headers.get(START_HEADER), time.time()), settings.timeout,
                    request.environ.get("gunicorn.socket"))
    budget.check_queued()
    parsed = parse_request(_read_body())
    try:
        body, truncated = embed_request(parsed, get_registry(), settings, budget)
    except ClientGone:
        log.info("the client of %s %s closed the connection: stopped computing its answer", request.method,
                 request.path)
        raise ApiError(499, "The client closed the connection before the answer was ready",
                       code="client_closed") from None
    response = Response(body, mimetype="application/json")
    if truncated:
        response.headers[TRUNCATED_HEADER] = str(truncated)
    return response


@bp.get("/v1/models")
@bp.get("/models")
def list_models():
    """Every served model in the OpenAI list shape."""
    return ModelList(data=[_model_card(model) for model in get_registry().models]).model_dump()


@bp.get("/v1/models/<path:model_id>")
@bp.get("/models/<path:model_id>")
def retrieve_model(model_id: str):
    """One model by its id or any name it answers to; 404 model_not_found for any other name."""
    return _model_card(find_model(get_registry(), model_id))
