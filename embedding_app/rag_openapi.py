"""The OpenAPI paths of the RAG routes (rerank, Cohere and TEI embed, tokenize), from the models of rag_schemas.py."""

from __future__ import annotations

from pydantic import BaseModel

from .rag_schemas import (
    CohereEmbedRequest,
    CohereEmbedResponse,
    DetokenizeRequest,
    Detokenized,
    RerankRequest,
    RerankResponse,
    TeiEmbedRequest,
    TeiRank,
    TeiRerankRequest,
    TeiToken,
    TokenizeRequest,
    VllmTokens,
)

MODELS = [RerankRequest, TeiRerankRequest, RerankResponse, TeiRank, CohereEmbedRequest, CohereEmbedResponse,
          TeiEmbedRequest, TokenizeRequest, TeiToken, VllmTokens, DetokenizeRequest, Detokenized]
REF = "#/components/schemas/{model}"
ERRORS = (400, 404, 413, 415, 500, 503)


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _one_of(*schemas: dict) -> dict:
    return schemas[0] if len(schemas) == 1 else {"oneOf": list(schemas)}


def _post(error, tag: str, operation_id: str, summary: str, requests: tuple, answers: tuple, unauthorized: tuple,
          auth: dict) -> dict:
    """One POST operation: JSON request(s) in, JSON answer(s) out, errors in the OpenAI shape."""
    responses = {"200": {"description": "OK", "content": {"application/json": {"schema": _one_of(*answers)}}}}
    for status in sorted((*ERRORS, *unauthorized)):
        responses[str(status)] = error(status)
    return {"post": {"tags": [tag], "operationId": operation_id, "summary": summary, "responses": responses,
                     "requestBody": {"required": True,
                                     "content": {"application/json": {"schema": _one_of(*requests)}}}, **auth}}


def rag_paths(error, unauthorized: tuple, auth: dict) -> dict:
    """The paths of the RAG routes; error(status) gives the response object of an error status."""
    vectors = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    tei_tokens = {"type": "array", "items": {"type": "array", "items": _ref(TeiToken)}}
    tei_ranks = {"type": "array", "items": _ref(TeiRank)}
    common = {"error": error, "unauthorized": unauthorized, "auth": auth}
    rerank = ("rerank", "Rank documents by relevance to a query (Jina / Cohere shape)", (_ref(RerankRequest),),
              (_ref(RerankResponse),))
    cohere = ("embed", "Embed texts in Cohere's shape, with compact embedding types", (_ref(CohereEmbedRequest),),
              (_ref(CohereEmbedResponse),))
    return {
        "/v1/rerank": _post(operation_id="rerankV1", tag=rerank[0], summary=rerank[1], requests=rerank[2],
                            answers=rerank[3], **common),
        "/v2/rerank": _post(operation_id="rerankV2", tag=rerank[0], summary=rerank[1] + " (Cohere v2)",
                            requests=rerank[2], answers=rerank[3], **common),
        "/rerank": _post(tag="rerank", operation_id="rerank", summary="Rerank: Jina / Cohere shape, or TEI's (texts)",
                         requests=(_ref(RerankRequest), _ref(TeiRerankRequest)), answers=(_ref(RerankResponse), tei_ranks),
                         **common),
        "/v1/embed": _post(operation_id="embedCohereV1", tag=cohere[0], summary=cohere[1] + " (v1)",
                           requests=cohere[2], answers=cohere[3], **common),
        "/v2/embed": _post(operation_id="embedCohereV2", tag=cohere[0], summary=cohere[1], requests=cohere[2],
                           answers=cohere[3], **common),
        "/embed": _post(tag="embed", operation_id="embedTei", summary="Embed in TEI's shape: a bare array of vectors",
                        requests=(_ref(TeiEmbedRequest),), answers=(vectors,), **common),
        "/tokenize": _post(tag="tokenize", operation_id="tokenize", summary="Tokens as the model sees them (TEI or vLLM)",
                           requests=(_ref(TokenizeRequest),), answers=(tei_tokens, _ref(VllmTokens)), **common),
        "/detokenize": _post(tag="tokenize", operation_id="detokenize", summary="Token ids back to text (vLLM)",
                             requests=(_ref(DetokenizeRequest),), answers=(_ref(Detokenized),), **common),
    }
