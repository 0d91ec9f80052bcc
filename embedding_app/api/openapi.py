"""The OpenAPI 3.1 document: the pydantic models of schemas.py plus the limits only the loaded model knows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from embedding_app.config.settings import Settings

from .error_catalogue import CATALOGUE
from .model_schemas import Health, ModelCard, ModelList, ServerInfo
from .rag_openapi import MODELS as RAG_MODELS
from .rag_openapi import bound_model, bound_prompt_name, bound_rag, rag_paths
from .schemas import EmbeddingRequest, EmbeddingResponse, ErrorResponse

if TYPE_CHECKING:  # the runtime's models hold torch objects, which this module never needs
    from embedding_app.runtime.registry import ServedModel

REF = "#/components/schemas/{model}"
# What each error status means on these routes; the codes that come with it are listed from the catalogue.
ERRORS = {
    400: "Invalid request: bad JSON, an unknown or invalid field, or a limit exceeded; `param` names the field.",
    401: "Missing or wrong API key (only when the server is configured with `API_KEY`).",
    404: "No served model answers to that name (the message lists the served ids), or no such route.",
    413: "The body is larger than `MAX_REQUEST_BYTES`.",
    415: "The body is not `application/json`.",
    500: "A fault in the server; the message never carries a traceback.",
    503: "Too busy (retry after `Retry-After`), or the request ran past `EMBEDDING_SERVER_TIMEOUT` (not retried: "
         "send less per request).",
}
BEARER = {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "One of the keys in `API_KEY`."}}


def _json(description: str, model: type[BaseModel]) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}}


def _error(status: int) -> dict:
    """An error status: its meaning, and an example body for each catalogue code that comes with it."""
    codes = [code for code, fault in CATALOGUE.items() if fault.status == status]
    examples = {code: {"value": {"error": {"message": CATALOGUE[code].message, "type": CATALOGUE[code].type,
                                           "param": None, "code": code}}} for code in codes}
    response = _json(f"{ERRORS[status]} Codes: {', '.join(f'`{code}`' for code in codes)}.", ErrorResponse)
    response["content"]["application/json"]["examples"] = examples
    return response


def _operation(tag: str, operation_id: str, summary: str, ok: type[BaseModel], errors=(), **extra) -> dict:
    """One operation: a 200 with its model, then each error status with the ErrorResponse model."""
    responses = {"200": _json("OK", ok)} | {str(status): _error(status) for status in errors}
    return {"tags": [tag], "operationId": operation_id, "summary": summary, "responses": responses, **extra}


def _request_examples(model: ServedModel, example_ids: list[int]) -> dict:
    """Bodies that succeed as written (on the first model), so Swagger UI's "Try it out" works on the first click."""
    bodies = {
        "single": ("One string", {"input": "The food was delicious."}),
        "array": ("An array of strings", {"input": ["The food was delicious.", "The waiter was friendly."]}),
        "token_ids": ("Token ids of the model's own vocabulary", {"input": [example_ids]}),
        "base64": ("base64 output, as the OpenAI SDK asks", {"input": "hello", "encoding_format": "base64"}),
    }
    if model.source.prompts:
        name = next(iter(model.source.prompts))
        bodies["prompt"] = (f"With the model's '{name}' prompt (extension)", {"input": "hello", "prompt_name": name})
    return {name: {"summary": summary, "value": {"model": model.id, **body}} for name, (summary, body) in bodies.items()}


def _bound_request(schema: dict, models: list[ServedModel], settings: Settings) -> None:
    """Add the bounds that come from the loaded models and the settings rather than from the types."""
    properties = schema["properties"]
    _text, texts, ids, id_lists = properties["input"]["anyOf"]  # the Union order in schemas.EmbeddingInput
    # With several models these are the widest bounds; the server checks each request against its model.
    models = [model for model in models if model.embedder.info.task == "embed"] or models
    infos = [model.embedder.info for model in models]
    token = {"type": "integer", "minimum": 0, "maximum": max(info.vocab_size for info in infos) - 1}
    ids["items"] = id_lists["items"]["items"] = token
    texts["maxItems"] = id_lists["maxItems"] = settings.max_inputs
    properties["dimensions"]["anyOf"][0]["maximum"] = max(info.dimensions for info in infos)
    bound_model(properties, models)
    bound_prompt_name(properties, models)


def _description(models: list[ServedModel]) -> str:
    served = ", ".join(f"`{model.id}` ({model.embedder.info.dimensions or 'reranker'}"
                       f"{' dimensions' if model.embedder.info.dimensions else ''})" for model in models)
    return (f"OpenAI-compatible embeddings on CPU, serving {served}; a request without `model` uses the first "
            "that can answer it. `/embeddings` and `/models` answer like their `/v1/` twins; rerankers answer "
            "`/v1/rerank` (Jina, Cohere), `/v2/rerank` (Cohere) and `/rerank` (also TEI's shape). "
            'Every error is `{"error": {"message", "type", "param", "code"}}`.')


def build_openapi(models: list[ServedModel], settings: Settings, example_ids: list[int]) -> dict:
    """The whole OpenAPI document for this server, serving these models with these settings."""
    bodies = [EmbeddingRequest, EmbeddingResponse, ModelList, ModelCard, Health, ServerInfo, ErrorResponse, *RAG_MODELS]
    _, definitions = models_json_schema([(body, "validation") for body in bodies], ref_template=REF)
    schemas = definitions["$defs"]
    _bound_request(schemas["EmbeddingRequest"], models, settings)
    bound_rag(schemas, models, settings)
    schemas["ErrorDetail"]["properties"]["code"]["anyOf"][0]["enum"] = list(CATALOGUE)  # the only codes answered
    # Only with API_KEY set do /v1/* need a key: without one, Swagger UI shows no "Authorize" and no padlocks.
    auth = {"security": [{"bearerAuth": []}]} if settings.api_keys else {}
    unauthorized = (401,) if settings.api_keys else ()
    embeddings = _operation(
        "embeddings", "createEmbedding", "Embed a string, strings, or token ids", EmbeddingResponse,
        (400, *unauthorized, 404, 413, 415, 500, 503), **auth,
        requestBody={"required": True, "content": {"application/json": {
            "schema": {"$ref": REF.format(model="EmbeddingRequest")},
            "examples": _request_examples(next((m for m in models if m.embedder.info.task == "embed"), models[0]),
                                          example_ids)}}})
    model_id = {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
                "example": models[0].id}
    paths = {
        "/v1/embeddings": {"post": embeddings},
        "/v1/models": {"get": _operation("models", "listModels", "The served models", ModelList, unauthorized,
                                         **auth)},
        "/v1/models/{model_id}": {"get": _operation("models", "retrieveModel", "One model by id or alias", ModelCard,
                                                    (*unauthorized, 404), **auth, parameters=[model_id])},
        **rag_paths(_error, unauthorized, auth, {model.embedder.info.task for model in models}),
        "/health": {"get": _operation("system", "health", "200 once this worker has its model", Health)},
        "/": {"get": _operation("system", "index", "What this server is and where to go next", ServerInfo)},
        "/metrics": {"get": {"tags": ["system"], "operationId": "metrics", "summary": "Prometheus metrics of all workers",
                             "responses": {"200": {"description": "Prometheus text exposition format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }
    components = {"schemas": schemas, **({"securitySchemes": BEARER} if settings.api_keys else {})}
    return {
        "openapi": "3.1.0",
        "info": {"title": "embedding-server", "version": "1", "description": _description(models)},
        "paths": paths,
        "components": components,
    }
