"""The routes RAG stacks call beside embeddings: rerank (Jina, Cohere, TEI), Cohere and TEI embed, tokenize. Thin."""

from __future__ import annotations

import uuid

from flask import Blueprint, current_app
from flask import request as http

from embedding_app.runtime.loading import get_registry

from .errors import ApiError
from .parsing import parse_json, validate
from .rag_schemas import (
    CohereEmbedRequest,
    DetokenizeRequest,
    RerankRequest,
    TeiEmbedRequest,
    TeiRerankRequest,
    TeiTokenizeRequest,
    VllmTokenizeRequest,
)
from .rag_service import (
    Ranked,
    cohere_embed,
    rerank,
    tei_embed,
    tei_truncation,
    tokenize,
)
from .routes import read_json, request_budget, truncated_response
from .service import choose_prompt, find_model

bp = Blueprint("rag", __name__)


def _settings():
    return current_app.config["SETTINGS"]


def _rerank_body(ranked: Ranked, documents: list[str], return_documents: bool) -> dict:
    """Jina's and Cohere's answer: results best first, usage (Jina) and meta (Cohere)."""
    results = [{"index": i, "relevance_score": score, **({"document": {"text": documents[i]}} if return_documents
                                                          else {})} for i, score in ranked.ranks]
    return {"id": str(uuid.uuid4()), "model": ranked.model, "results": results,
            "usage": {"total_tokens": ranked.tokens},
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1},
                     "tokens": {"input_tokens": ranked.tokens}}}


def _tei_rerank(data: dict):
    request = validate(data, TeiRerankRequest)
    settings = _settings()
    truncation = tei_truncation(settings, request.truncate, request.truncation_direction)
    ranked = rerank(get_registry(), settings, request_budget(), request.model, request.query, request.texts,
                    raw=request.raw_scores, truncation=truncation, param="texts")
    body = [{"index": i, "score": score, **({"text": request.texts[i]} if request.return_text else {})}
            for i, score in ranked.ranks]
    return truncated_response(body, ranked.truncated)


@bp.post("/v1/rerank")
@bp.post("/v2/rerank")
@bp.post("/rerank")
def create_rerank():
    """Rank documents by relevance to a query (Jina, Cohere v1/v2; TEI's shape on /rerank when it sends texts)."""
    data = parse_json(read_json())
    if "texts" in data and "documents" not in data:
        return _tei_rerank(data)
    request = validate(data, RerankRequest)
    ranked = rerank(get_registry(), _settings(), request_budget(), request.model, request.query, request.documents,
                    request.top_n, request.raw_scores, max_document_tokens=request.max_tokens_per_doc)
    return truncated_response(_rerank_body(ranked, request.documents, bool(request.return_documents)),
                              ranked.truncated)


@bp.post("/v1/embed")
@bp.post("/v2/embed")
def create_cohere_embed():
    """Embed texts in Cohere's shape: one array per embedding type (v1 without types: bare floats)."""
    request = validate(parse_json(read_json()), CohereEmbedRequest)
    # Cohere v1 answers a request without embedding_types with bare floats; v2 always by type.
    by_type = request.embedding_types is not None or not http.path.startswith("/v1/")
    return truncated_response(*cohere_embed(get_registry(), _settings(), request_budget(), request, by_type))


@bp.post("/embed")
def create_tei_embed():
    """Embed inputs in TEI's shape: the answer is a bare array of vectors."""
    request = validate(parse_json(read_json()), TeiEmbedRequest)
    vectors, truncated = tei_embed(get_registry(), _settings(), request_budget(), request)
    return truncated_response(vectors, truncated)


@bp.post("/tokenize")
def create_tokenize():
    """Tokens of texts as the model sees them: TEI's `inputs` (token objects) or vLLM's `prompt` (ids)."""
    data = parse_json(read_json())
    request = validate(data, VllmTokenizeRequest if "prompt" in data else TeiTokenizeRequest)
    model = find_model(get_registry(), request.model)
    prompt = choose_prompt(model.source, None, request.prompt_name) if model.embedder.info.task == "embed" else ""
    if isinstance(request, VllmTokenizeRequest):
        tokens = tokenize(model, prompt + request.prompt, request.add_special_tokens)
        return {"count": len(tokens), "max_model_len": model.embedder.info.max_tokens,
                "tokens": [token["id"] for token in tokens], "token_strs": [token["text"] for token in tokens]}
    texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
    return truncated_response([tokenize(model, prompt + text, request.add_special_tokens) for text in texts], 0)


@bp.post("/detokenize")
def create_detokenize():
    """Text of token ids (vLLM's /detokenize)."""
    request = validate(parse_json(read_json()), DetokenizeRequest)
    model = find_model(get_registry(), request.model)
    engine = model.embedder
    try:
        engine.check_ids([request.tokens])
    except ValueError as exc:
        raise ApiError(400, f"Invalid tokens: {exc}", param="tokens", code="invalid_input") from None
    return {"prompt": engine.tokenizer.decode(request.tokens, skip_special_tokens=True)}
