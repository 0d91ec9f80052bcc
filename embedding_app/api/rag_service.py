"""Rerank, Cohere and TEI embed, and tokenize requests end to end, without HTTP: one engine behind every shape."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from embedding_app.config.settings import Settings
from embedding_app.inference.inputs import InputError, Inputs
from embedding_app.runtime import metrics
from embedding_app.runtime.speed import record_speed

from .compact import compact
from .deadline import Budget
from .encoding import shorten
from .errors import ApiError
from .rag_schemas import COHERE_INPUT_TYPES, CohereEmbedRequest, TeiEmbedRequest
from .service import (
    Truncation,
    check_count,
    check_dimensions,
    check_tokens,
    choose_prompt,
    embed_inputs,
    find_model,
    serving,
)

if TYPE_CHECKING:
    from embedding_app.runtime.registry import Registry, ServedModel


class Ranked(NamedTuple):
    """A rerank answer before it takes a route's shape: (index, score) best first, tokens, truncated pairs."""

    model: str
    ranks: list[tuple[int, float]]
    tokens: int
    truncated: int


def tei_truncation(settings: Settings, truncate: bool | None, direction: str) -> Truncation:
    """TEI's truncate (omitted: TRUNCATE) and truncation_direction (Left drops the start)."""
    return Truncation(settings.truncate if truncate is None else truncate, direction == "Left")


def rerank(registry: Registry, settings: Settings, budget: Budget, model_name: str | None, query: str,
           documents: list[str], top_n: int | None = None, raw: bool = False, truncation: Truncation | None = None,
           param: str = "documents", max_document_tokens: int | None = None) -> Ranked:
    """Score every document against the query within the limits and the time budget, and rank them best first."""
    with serving():
        started = time.perf_counter()
        model = find_model(registry, model_name, "rerank")
        check_count(len(documents), settings, param)
        truncation = truncation or Truncation(settings.truncate)
        reranker = model.embedder
        query_ids, *document_ids = reranker.tokenize([query, *documents], whole=truncation.from_start)
        try:
            pairs, truncated = reranker.pairs(query_ids, document_ids, truncation.enabled, truncation.from_start,
                                              max_document_tokens)
        except InputError as exc:
            raise ApiError(400, f"Invalid {param}[{exc.index}]: {exc}", param=f"{param}[{exc.index}]",
                           code="invalid_input") from None
        tokens = sum(len(ids) for ids, _ in pairs)
        check_tokens(tokens, settings, param)
        budget.admit(model.id, tokens, settings.max_tokens_per_request)
        scores = reranker.score(pairs, raw, budget.between_forwards)
        metrics.record_embeddings(model.id, len(pairs), tokens, truncated)
        record_speed(model.id, tokens, time.perf_counter() - started)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:top_n]  # stable: ties keep the request's order
    return Ranked(model.id, [(i, float(scores[i])) for i in order], tokens, truncated)


def cohere_embed(registry: Registry, settings: Settings, budget: Budget, request: CohereEmbedRequest,
                 by_type: bool) -> tuple[dict, int]:
    """A Cohere embed answer (one array per embedding type, or bare floats for v1 without types) and how many texts
    were truncated."""
    with serving():
        model = find_model(registry, request.model, "embed")
        check_dimensions(model, request.output_dimension, "output_dimension")
        input_type = COHERE_INPUT_TYPES[request.input_type] if request.input_type else None
        prompt = choose_prompt(model.source, input_type, None)
        truncate = request.truncate or ("END" if settings.truncate else "NONE")
        truncation = Truncation(truncate != "NONE", truncate == "START", request.max_tokens)
        vectors, tokens, truncated = embed_inputs(model, Inputs("texts", request.texts, single=False), prompt,
                                                  settings, truncation, budget, param="texts")
    vectors = shorten(vectors, request.output_dimension)
    types = request.embedding_types or ["float"]
    embeddings = {kind: compact(vectors, kind) for kind in dict.fromkeys(types)} if by_type else list(vectors)
    body = {"id": str(uuid.uuid4()), "response_type": "embeddings_by_type" if by_type else "embeddings_floats",
            "embeddings": embeddings, "texts": request.texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}}}
    return body, truncated


def tei_embed(registry: Registry, settings: Settings, budget: Budget,
              request: TeiEmbedRequest) -> tuple[np.ndarray, int]:
    """TEI's /embed: vectors (normalised unless asked not to, cut to dimensions) and how many inputs were truncated."""
    with serving():
        model = find_model(registry, request.model, "embed")
        check_dimensions(model, request.dimensions)
        prompt = choose_prompt(model.source, None, request.prompt_name)
        texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
        truncation = tei_truncation(settings, request.truncate, request.truncation_direction)
        inputs = Inputs("texts", texts, single=isinstance(request.inputs, str))
        vectors, _, truncated = embed_inputs(model, inputs, prompt, settings, truncation, budget, normalize=False,
                                             param="inputs")
    if request.dimensions:
        vectors = np.ascontiguousarray(vectors[:, :request.dimensions])  # orjson serialises contiguous arrays only
    if request.normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors, truncated


def tokenize(model: ServedModel, text: str, add_special_tokens: bool) -> list[dict]:
    """Every token of one text as the model sees it (special tokens as the embeddings add them), with offsets."""
    engine = model.embedder
    encoded = engine.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    strings = engine.tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    tokens = [{"id": i, "text": s, "special": False, "start": a, "stop": b}
              for i, s, (a, b) in zip(encoded["input_ids"], strings, encoded["offset_mapping"])]
    if not add_special_tokens:
        return tokens
    special = [[{"id": i, "text": engine.tokenizer.convert_ids_to_tokens(i), "special": True, "start": None,
                 "stop": None} for i in ids] for ids in (engine.prefix, engine.suffix)]
    return special[0] + tokens + special[1]

