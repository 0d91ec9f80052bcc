"""The answers of the RAG routes as pydantic models: rerank (Jina, Cohere, TEI), Cohere embed, tokenize, detokenize."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class RerankDocument(BaseModel):
    """A document's text in a rerank result."""

    text: str


class RerankResult(BaseModel):
    """One document's score, at the index it had in the request."""

    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    """Tokens the model saw over all pairs (Jina's usage)."""

    total_tokens: int


class RerankResponse(BaseModel):
    """Body of a rerank answer: results best first; usage for Jina, meta for Cohere."""

    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage
    meta: dict


class TeiRank(BaseModel):
    """One element of TEI's /rerank answer."""

    index: int
    score: float
    text: str | None = None


class CohereEmbedResponse(BaseModel):
    """Body of POST /v2/embed: one array per requested embedding type."""

    id: str
    response_type: Literal["embeddings_by_type", "embeddings_floats"]
    embeddings: dict[str, list] | list[list[float]]
    texts: list[str]
    meta: dict


class TeiToken(BaseModel):
    """One token of TEI's /tokenize answer."""

    id: int
    text: str
    special: bool
    start: int | None
    stop: int | None


class VllmTokens(BaseModel):
    """vLLM's /tokenize answer."""

    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str]


class Detokenized(BaseModel):
    """vLLM's /detokenize answer."""

    prompt: str


# The answers the OpenAPI document describes (their parts are found through them).
RESPONSES = (RerankResponse, TeiRank, CohereEmbedResponse, TeiToken, VllmTokens, Detokenized)
