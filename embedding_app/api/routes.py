"""The OpenAI-compatible routes: embeddings and models. Thin: parse, call the service, respond."""

from __future__ import annotations

import time

import orjson
from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from embedding_app.runtime.loading import get_registry

from .deadline import START_HEADER, Budget, parse_start
from .errors import ApiError
from .model_schemas import Compute, ModelCard, ModelList
from .parsing import parse_request
from .service import embed_request, find_model

bp = Blueprint("openai", __name__)
# Set when TRUNCATE=true cut some inputs to the model's maximum; the body keeps OpenAI's shape.
TRUNCATED_HEADER = "X-Truncated-Inputs"


def _model_card(model) -> dict:
    return ModelCard(id=model.id, created=model.source.created, owned_by="embedding-server",
                     capabilities=[model.embedder.info.task], compute=Compute.of(model.embedder.choice)).model_dump()


def _read_body() -> bytes:
    """The raw body; a chunked one that reaches the limit gets 413 too (werkzeug just stops reading it)."""
    body = request.get_data(cache=False)
    if request.content_length is None and len(body) >= current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()
    return body


def read_json() -> bytes:
    """The body of a JSON request; 415 for any other content type."""
    if request.mimetype not in ("", "application/json"):
        raise ApiError(415, f"Content-Type must be application/json, not {request.mimetype}",
                       code="unsupported_media_type")
    return _read_body()


def request_budget() -> Budget:
    """The time budget of the request in hand; 503 at once if it already waited past its deadline in the queue."""
    # It counts from when the proxy passed the request on: time queued for a worker is part of it.
    budget = Budget(parse_start(request.headers.get(START_HEADER), time.time()), current_app.config["SETTINGS"].timeout,
                    request.environ.get("gunicorn.socket"))
    budget.check_queued()
    return budget


def truncated_response(body, truncated: int) -> Response:
    """A JSON response (bytes or a value to serialise), with the truncation header when inputs were cut."""
    response = Response(body if isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                        mimetype="application/json")
    if truncated:
        response.headers[TRUNCATED_HEADER] = str(truncated)
    return response


@bp.post("/v1/embeddings")
@bp.post("/embeddings")
def create_embeddings():
    """Embed the request's input (OpenAI POST /v1/embeddings)."""
    budget = request_budget()
    parsed = parse_request(read_json())
    body, truncated = embed_request(parsed, get_registry(), current_app.config["SETTINGS"], budget)
    return truncated_response(body, truncated)


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
