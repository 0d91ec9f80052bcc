"""The OpenAPI paths of the RAG routes (rerank, Cohere and TEI embed, tokenize), from the models of rag_schemas.py and rag_responses.py."""

from __future__ import annotations

from .rag_responses import RESPONSES
from .rag_schemas import REQUESTS

MODELS = [*REQUESTS, *RESPONSES]
REF = "#/components/schemas/{model}"
RERANK_PATHS = ("/v1/rerank", "/v2/rerank", "/rerank")
EMBED_PATHS = ("/v1/embed", "/v2/embed", "/embed")
ERROR_STATUSES = (400, 404, 413, 415, 500, 503)


def _ref(model: str) -> dict:
    """A reference to one of MODELS by its class name."""
    return {"$ref": REF.format(model=model)}


def _one_of(*schemas: dict) -> dict:
    return schemas[0] if len(schemas) == 1 else {"oneOf": list(schemas)}


def _post(error, operation_id: str, tag: str, summary: str, requests: tuple, answers: tuple, unauthorized: tuple,
          auth: dict) -> dict:
    """One POST operation: JSON request(s) in, JSON answer(s) out, errors in the OpenAI shape (error(status))."""
    responses = {"200": {"description": "OK", "content": {"application/json": {"schema": _one_of(*answers)}}}}
    for status in sorted((*ERROR_STATUSES, *unauthorized)):
        responses[str(status)] = error(status)
    return {"post": {"tags": [tag], "operationId": operation_id, "summary": summary, "responses": responses,
                     "requestBody": {"required": True,
                                     "content": {"application/json": {"schema": _one_of(*requests)}}}, **auth}}


def model_names(models: list) -> list[str]:
    """Every name the models answer to: served ids and aliases."""
    return [name for model in models for name in (model.id, *model.source.aliases)]


def bound_model(properties: dict, models: list) -> None:
    """model must name one of these models (those that can answer the request): list every name they answer to."""
    names = model_names(models)
    properties["model"]["examples"] = names
    properties["model"]["anyOf"][0]["enum"] = names


def bound_prompt_name(properties: dict, models: list) -> None:
    """prompt_name must be a name a model defines: list them all (only null when no model has prompts)."""
    prompt_names = sorted({name for model in models for name in model.source.prompts})
    prompt_name = properties["prompt_name"]["anyOf"]
    if prompt_names:
        prompt_name[0]["enum"] = prompt_names
    else:
        prompt_name.pop(0)


def bound_rag(schemas: dict, models: list, settings) -> None:
    """Add the bounds that come from the loaded models and the settings to the RAG request models."""
    embedders = [model for model in models if model.embedder.info.task == "embed"]
    rerankers = [model for model in models if model.embedder.info.task == "rerank"]
    dimensions = max((model.embedder.info.dimensions for model in embedders), default=1)
    for name, field, kind in (("RerankRequest", "documents", rerankers), ("TeiRerankRequest", "texts", rerankers),
                              ("CohereEmbedRequest", "texts", embedders), ("TeiEmbedRequest", "inputs", embedders)):
        properties = schemas[name]["properties"]
        lists = [item for item in properties[field].get("anyOf", [properties[field]]) if item.get("type") == "array"]
        for schema in lists:
            schema["maxItems"] = settings.max_inputs
        bound_model(properties, kind)
    schemas["CohereEmbedRequest"]["properties"]["output_dimension"]["anyOf"][0]["maximum"] = dimensions
    schemas["TeiEmbedRequest"]["properties"]["dimensions"]["anyOf"][0]["maximum"] = dimensions
    for name in ("TeiEmbedRequest", "TeiTokenizeRequest", "VllmTokenizeRequest"):
        bound_prompt_name(schemas[name]["properties"], embedders)
    # Ids every served model knows (a request may name any of them).
    vocabulary = min(model.embedder.info.vocab_size for model in models)
    schemas["DetokenizeRequest"]["properties"]["tokens"]["items"] = {"type": "integer", "minimum": 0,
                                                                     "maximum": vocabulary - 1}


def rag_paths(error, unauthorized: tuple, auth: dict, tasks: set[str]) -> dict:
    """The paths of the RAG routes for the tasks the served models can do; error(status) gives an error's response."""
    vectors = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    tei_tokens = {"type": "array", "items": {"type": "array", "items": _ref("TeiToken")}}
    tei_ranks = {"type": "array", "items": _ref("TeiRank")}
    rerank = (_ref("RerankRequest"),), (_ref("RerankResponse"),)
    cohere = (_ref("CohereEmbedRequest"),), (_ref("CohereEmbedResponse"),)
    # path: (operationId, tag, summary, request schemas, answer schemas)
    routes = {
        "/v1/rerank": ("rerankV1", "rerank", "Rank documents by relevance to a query (Jina, Cohere v1)", *rerank),
        "/v2/rerank": ("rerankV2", "rerank", "Rank documents by relevance to a query (Cohere v2)", *rerank),
        "/rerank": ("rerank", "rerank", "Rerank: Jina / Cohere shape, or TEI's (with texts)",
                    (_ref("RerankRequest"), _ref("TeiRerankRequest")), (_ref("RerankResponse"), tei_ranks)),
        "/v1/embed": ("embedCohereV1", "embed", "Embed texts in Cohere's v1 shape", *cohere),
        "/v2/embed": ("embedCohereV2", "embed", "Embed texts in Cohere's shape, with compact embedding types", *cohere),
        "/embed": ("embedTei", "embed", "Embed in TEI's shape: a bare array of vectors", (_ref("TeiEmbedRequest"),),
                   (vectors,)),
        "/tokenize": ("tokenize", "tokenize", "Tokens as the model sees them (TEI or vLLM)",
                      (_ref("TeiTokenizeRequest"), _ref("VllmTokenizeRequest")), (tei_tokens, _ref("VllmTokens"))),
        "/detokenize": ("detokenize", "tokenize", "Token ids back to text (vLLM)", (_ref("DetokenizeRequest"),),
                        (_ref("Detokenized"),)),
    }
    # A route no served model can answer is left out: every documented request can succeed.
    unserved = {*(() if "rerank" in tasks else RERANK_PATHS), *(() if "embed" in tasks else EMBED_PATHS)}
    return {path: _post(error, *route, unauthorized, auth) for path, route in routes.items() if path not in unserved}
