"""One embeddings request end to end, without HTTP: model, prompt, limits, tokenization, response body."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from embedding_app.config.settings import Settings
from embedding_app.inference.inputs import InputError, Inputs
from embedding_app.runtime import metrics, status_board, thread_budget
from embedding_app.runtime.speed import record_speed

from .deadline import Budget
from .encoding import render_embeddings, shorten
from .errors import ApiError
from .schemas import INPUT_TYPE_PROMPTS, EmbeddingRequest

if TYPE_CHECKING:  # the runtime's models hold torch objects; the request path above them never needs torch
    from embedding_app.inference.model_source import ModelSource
    from embedding_app.runtime.registry import Registry, ServedModel

TASK_ROUTES = {"embed": "/v1/embeddings, /v2/embed or /embed", "rerank": "/v1/rerank, /v2/rerank or /rerank"}


class Vectors(NamedTuple):
    """Embeddings of a request's inputs, the tokens the model saw, and how many inputs were truncated."""

    vectors: np.ndarray
    tokens: int
    truncated: int


class Embedded(NamedTuple):
    """A rendered embeddings response and how many of its inputs were truncated to fit the model."""

    body: bytes
    truncated: int


def find_model(registry: Registry, requested: str | None, task: str | None = None) -> ServedModel:
    """The model a request or lookup names (none: the first that does task); 404 model_not_found for any other
    name, 400 when the model cannot do task."""
    if requested is None and task is not None:
        model = next((model for model in registry.models if model.embedder.info.task == task), registry.models[0])
    else:
        model = registry.find(requested)
    if model is None:
        served = ", ".join(f"'{id_}'" for id_ in registry.ids())
        raise ApiError(404, f"The model '{requested}' does not exist; this server serves {served}",
                       param="model", code="model_not_found")
    can = model.embedder.info.task
    if task is not None and can != task:
        kind = "a reranker" if can == "rerank" else "an embedding model"
        raise ApiError(400, f"The model '{model.id}' cannot {task}: it is {kind}; send it to {TASK_ROUTES[can]}",
                       param="model", code="unsupported_model")
    return model


def check_tokens(tokens: int, settings: Settings, param: str) -> None:
    """400 too_many_tokens for a request over MAX_TOKENS_PER_REQUEST."""
    if tokens > settings.max_tokens_per_request:
        raise ApiError(400, f"The request has {tokens} tokens, more than this server's limit of "
                            f"{settings.max_tokens_per_request} per request (MAX_TOKENS_PER_REQUEST)",
                       param=param, code="too_many_tokens")


def check_count(count: int, settings: Settings, param: str) -> None:
    """400 too_many_inputs for more items than MAX_INPUTS."""
    if count > settings.max_inputs:
        raise ApiError(400, f"'{param}' has {count} items, more than this server's limit of "
                            f"{settings.max_inputs} (MAX_INPUTS)", param=param, code="too_many_inputs")


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


class Truncation(NamedTuple):
    """What to do with an input longer than the model takes: cut it (its end, or its start) or refuse it."""

    enabled: bool
    from_start: bool = False
    limit: int | None = None  # a request's own cap on text tokens per input, below the model's


def _sequences(inputs: Inputs, prompt: str, model: ServedModel, truncation: Truncation,
               param: str) -> tuple[list[list[int]], int]:
    """Finished token sequences of the inputs and how many were truncated; prompts go before texts only."""
    embedder = model.embedder
    try:
        if inputs.kind == "texts":
            # As sentence-transformers does: prompt and text are joined, then tokenized (and truncated) together.
            texts = [prompt + text for text in inputs.items] if prompt else inputs.items
            ids = embedder.tokenize(texts, whole=truncation.from_start)
        else:  # token ids are the model's input as they are: no prompt
            ids = inputs.items
            embedder.check_ids(ids)
        return embedder.add_special_tokens(ids, truncation.enabled, truncation.from_start, truncation.limit)
    except InputError as exc:
        param = param if inputs.single else f"{param}[{exc.index}]"
        raise ApiError(400, f"Invalid {param}: {exc}", param=param, code="invalid_input") from None


@contextmanager
def serving() -> Iterator[None]:
    """Count this worker busy (its share of the cores, its state on the status board) while a request computes."""
    # Busy from tokenizing to rendering, not only in forwards: a worker about to compute already needs its share.
    started, seconds = time.perf_counter(), None
    status_board.start_request()
    try:
        with thread_budget.current().busy():
            yield
        seconds = time.perf_counter() - started
    finally:
        status_board.finish_request(seconds)  # refused requests would understate how long requests take


def embed_inputs(model: ServedModel, inputs: Inputs, prompt: str, settings: Settings, truncation: Truncation,
                 budget: Budget, normalize: bool | None = None, param: str = "input") -> Vectors:
    """Embed a request's inputs within the limits (MAX_INPUTS, tokens per input and per request, its time budget)
    and count them."""
    started = time.perf_counter()
    check_count(len(inputs.items), settings, param)
    sequences, truncated = _sequences(inputs, prompt, model, truncation, param)
    tokens = sum(map(len, sequences))
    check_tokens(tokens, settings, param)
    budget.admit(model.id, tokens, settings.max_tokens_per_request)
    vectors = model.embedder.embed(sequences, normalize, budget.between_forwards)
    metrics.record_embeddings(model.id, len(sequences), tokens, truncated)
    # Tokenizing included: admission estimates the whole request from this.
    record_speed(model.id, tokens, time.perf_counter() - started)
    return Vectors(vectors, tokens, truncated)


def check_dimensions(model: ServedModel, dimensions: int | None, param: str = "dimensions") -> None:
    """400 unless dimensions (if given) is at most the model's."""
    if dimensions is not None and dimensions > model.embedder.info.dimensions:
        raise ApiError(400, f"'{param}' must be between 1 and {model.embedder.info.dimensions} for this model",
                       param=param, code="invalid_value")


def embed_request(request: EmbeddingRequest, registry: Registry, settings: Settings, budget: Budget) -> Embedded:
    """Validate a parsed request against its model, the limits and its time budget, embed it, render the JSON body."""
    with serving():
        return _embed_request(request, registry, settings, budget)


def _embed_request(request: EmbeddingRequest, registry: Registry, settings: Settings, budget: Budget) -> Embedded:
    model = find_model(registry, request.model, "embed")
    check_dimensions(model, request.dimensions)
    prompt = choose_prompt(model.source, request.input_type, request.prompt_name)
    vectors, tokens, truncated = embed_inputs(model, request.input, prompt, settings, Truncation(settings.truncate),
                                              budget)
    vectors = shorten(vectors, request.dimensions)
    # The served name, not the name sent: as OpenAI answers with the model that ran (docs/configuration.md).
    return Embedded(render_embeddings(vectors, request.encoding_format, model.id, tokens), truncated)
