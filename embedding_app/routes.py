"""The OpenAI-compatible routes: embeddings and models. Thin: parse, call the service, respond."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import ApiError
from .runtime import get_embedder
from .parsing import parse_request
from .service import check_model, embed_request

bp = Blueprint("openai", __name__)


def _json(body: bytes) -> Response:
    return Response(body, mimetype="application/json")


def _model_card(info) -> dict:
    return {"id": info.id, "object": "model", "created": info.created, "owned_by": "embedding-server"}


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
    parsed = parse_request(_read_body())
    return _json(embed_request(parsed, get_embedder(), current_app.config["SETTINGS"]))


@bp.get("/v1/models")
@bp.get("/models")
def list_models():
    """The served model in the OpenAI list shape."""
    return {"object": "list", "data": [_model_card(get_embedder().info)]}


@bp.get("/v1/models/<path:model_id>")
@bp.get("/models/<path:model_id>")
def retrieve_model(model_id: str):
    """One model by id; 404 model_not_found for any other id."""
    info = get_embedder().info
    check_model(model_id, info.id)
    return _model_card(info)
