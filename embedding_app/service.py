"""One embeddings request end to end, without HTTP: limits, tokenization, model, response body."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import metrics
from .encoding import render_embeddings, shorten
from .errors import ApiError, InputError
from .schemas import EmbeddingRequest
from .settings import Settings

if TYPE_CHECKING:  # the embedder imports torch; the request path above it never needs to
    from .embedder import Embedder


def check_model(requested: str | None, served: str) -> None:
    """Reject a request or lookup that names a model this server does not serve."""
    if requested is not None and requested != served:
        raise ApiError(404, f"The model '{requested}' does not exist; this server serves '{served}'",
                       param="model", code="model_not_found")


def _sequences(request: EmbeddingRequest, embedder: Embedder, settings: Settings) -> list[list[int]]:
    texts, ids = request.texts_or_ids()
    count = len(texts or ids)
    if count > settings.max_inputs:
        raise ApiError(400, f"'input' has {count} items, more than this server's limit of "
                            f"{settings.max_inputs} (MAX_INPUTS)", param="input", code="too_many_inputs")
    try:
        if ids is None:
            ids = embedder.tokenize(texts)
        else:
            embedder.check_ids(ids)
        return embedder.finish(ids, settings.truncate)
    except InputError as exc:
        param = "input" if request.is_single() else f"input[{exc.index}]"
        raise ApiError(400, f"Invalid {param}: {exc}", param=param, code="invalid_input") from None


def embed_request(request: EmbeddingRequest, embedder: Embedder, settings: Settings) -> bytes:
    """Validate a parsed request against the model and the limits, embed it, and render the JSON body."""
    check_model(request.model, embedder.info.id)
    if request.dimensions is not None and request.dimensions > embedder.info.dimensions:
        raise ApiError(400, f"'dimensions' must be between 1 and {embedder.info.dimensions} for this model",
                       param="dimensions", code="invalid_value")
    sequences = _sequences(request, embedder, settings)
    tokens = sum(map(len, sequences))
    if tokens > settings.max_tokens_per_request:
        raise ApiError(400, f"The request has {tokens} tokens, more than this server's limit of "
                            f"{settings.max_tokens_per_request} per request (MAX_TOKENS_PER_REQUEST)",
                       param="input", code="too_many_tokens")
    vectors = shorten(embedder.embed(sequences), request.dimensions)
    metrics.record_embeddings(len(sequences), tokens)
    return render_embeddings(vectors, request.encoding_format, embedder.info.id, tokens)
