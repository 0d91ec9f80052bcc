"""One embeddings request end to end, without HTTP: model, prompt, limits, tokenization, response body."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

from . import metrics, status_board, thread_budget
from .deadline import Budget, record_speed
from .encoding import render_embeddings, shorten
from .errors import ApiError
from .inputs import InputError, Inputs
from .schemas import EmbeddingRequest
from .settings import Settings

if TYPE_CHECKING:  # the runtime's models hold torch objects; the request path above them never needs torch
    from .model_source import ModelSource
    from .runtime import Registry, ServedModel

# input_type -> the prompt names it looks for, first found wins (e5 calls its document prompt "passage"). None found:
# no prompt, not the default one, as sentence-transformers' encode_query / encode_document do for an absent prompt.
INPUT_TYPE_PROMPTS = {"query": ("query",), "document": ("document", "passage", "corpus")}
INPUT_TYPE_PROMPTS["passage"] = INPUT_TYPE_PROMPTS["document"]


class Embedded(NamedTuple):
    """A rendered embeddings response and how many of its inputs were truncated to fit the model."""

    body: bytes
    truncated: int


def find_model(registry: Registry, requested: str | None) -> ServedModel:
    """The model a request or lookup names; 404 model_not_found, listing the served ids, for any other name."""
    model = registry.find(requested)
    if model is None:
        served = ", ".join(f"'{id_}'" for id_ in registry.ids())
        raise ApiError(404, f"The model '{requested}' does not exist; this server serves {served}",
                       param="model", code="model_not_found")
    return model


def choose_prompt(source: ModelSource, input_type: str | None, prompt_name: str | None) -> str:
    """The prompt text for a request's input_type (none found: no prompt) or prompt_name; neither: the default."""
    if input_type is not None and prompt_name is not None:
        raise ApiError(400, "Send either 'input_type' or 'prompt_name', not both", param="prompt_name",
                       code="invalid_value")
    if input_type is not None:
        name = next((name for name in INPUT_TYPE_PROMPTS[input_type] if name in source.prompts), None)
        return source.prompts[name] if name else ""
    if prompt_name is not None and prompt_name not in source.prompts:
        defined = f"its prompts are: {', '.join(source.prompts)}" if source.prompts else (
            "it has none (they come from its config_sentence_transformers.json or MODEL_PROMPTS)")
        raise ApiError(400, f"The model '{source.served_name}' has no prompt named '{prompt_name}'; {defined}",
                       param="prompt_name", code="invalid_value")
    name = prompt_name or source.default_prompt_name
    return source.prompts[name] if name else ""


def _sequences(inputs: Inputs, prompt: str, model: ServedModel, settings: Settings) -> tuple[list[list[int]], int]:
    """Finished token sequences of the inputs and how many were truncated; prompts go before texts only."""
    if len(inputs.items) > settings.max_inputs:
        raise ApiError(400, f"'input' has {len(inputs.items)} items, more than this server's limit of "
                            f"{settings.max_inputs} (MAX_INPUTS)", param="input", code="too_many_inputs")
    embedder = model.embedder
    try:
        if inputs.kind == "texts":
            # As sentence-transformers does: prompt and text are joined, then tokenized (and truncated) together.
            ids = embedder.tokenize([prompt + text for text in inputs.items] if prompt else inputs.items)
        else:  # token ids are the model's input as they are: no prompt
            ids = inputs.items
            embedder.check_ids(ids)
        return embedder.finish_counted(ids, settings.truncate)
    except InputError as exc:
        param = "input" if inputs.single else f"input[{exc.index}]"
        raise ApiError(400, f"Invalid {param}: {exc}", param=param, code="invalid_input") from None


def embed_request(request: EmbeddingRequest, registry: Registry, settings: Settings, budget: Budget) -> Embedded:
    """Validate a parsed request against its model, the limits and its time budget, embed it, render the JSON body."""
    # Busy from tokenizing to rendering, not only in forwards: a worker about to compute already needs its share.
    started, seconds = time.perf_counter(), None
    status_board.start_request()
    try:
        with thread_budget.busy():
            embedded = _embed_request(request, registry, settings, budget)
        seconds = time.perf_counter() - started
        return embedded
    finally:
        status_board.finish_request(seconds)  # refused requests would understate how long requests take


def _embed_request(request: EmbeddingRequest, registry: Registry, settings: Settings, budget: Budget) -> Embedded:
    started = time.perf_counter()
    model = find_model(registry, request.model)
    info = model.embedder.info
    if request.dimensions is not None and request.dimensions > info.dimensions:
        raise ApiError(400, f"'dimensions' must be between 1 and {info.dimensions} for this model",
                       param="dimensions", code="invalid_value")
    prompt = choose_prompt(model.source, request.input_type, request.prompt_name)
    sequences, truncated = _sequences(request.input, prompt, model, settings)
    tokens = sum(map(len, sequences))
    if tokens > settings.max_tokens_per_request:
        raise ApiError(400, f"The request has {tokens} tokens, more than this server's limit of "
                            f"{settings.max_tokens_per_request} per request (MAX_TOKENS_PER_REQUEST)",
                       param="input", code="too_many_tokens")
    budget.admit(model.id, tokens, settings.max_tokens_per_request)
    vectors = shorten(model.embedder.embed(sequences, budget.between_forwards), request.dimensions)
    metrics.record_embeddings(model.id, len(sequences), tokens, truncated)
    # The served name, not the name sent: as OpenAI answers with the model that ran (see README).
    body = render_embeddings(vectors, request.encoding_format, model.id, tokens)
    # Tokenizing and rendering included: admission estimates the whole request from this.
    record_speed(model.id, tokens, time.perf_counter() - started)
    return Embedded(body, truncated)
