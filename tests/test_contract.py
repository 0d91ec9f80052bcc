"""Every rendered body matches its pydantic model in schemas.py, the source of the OpenAPI document, exactly."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from embedding_app.api.model_schemas import Health, ModelCard, ModelList, ServerInfo
from embedding_app.api.schemas import EmbeddingResponse, ErrorResponse


def assert_matches(model: type[BaseModel], body: dict) -> None:
    """Valid for the model, and nothing lost or converted on the way back: no extra, missing or re-typed field."""
    assert model.model_validate(body, strict=True).model_dump(mode="json") == body


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_embeddings_body_matches_its_model(client_two, encoding_format):
    response = client_two.post("/v1/embeddings", json={"input": ["a", "b"], "encoding_format": encoding_format})
    assert_matches(EmbeddingResponse, response.get_json())


def test_models_list_card_health_and_index_match_their_models(client_two):
    assert_matches(ModelList, client_two.get("/v1/models").get_json())
    assert_matches(ModelCard, client_two.get("/v1/models/tiny-prompted").get_json())
    assert_matches(Health, client_two.get("/health").get_json())
    assert_matches(ServerInfo, client_two.get("/").get_json())


@pytest.mark.parametrize("method, path, kwargs", [
    ("post", "/v1/embeddings", {"json": {"input": ""}}),
    ("post", "/v1/embeddings", {"data": b"{", "content_type": "application/json"}),
    ("post", "/v1/embeddings", {"json": {"input": "x", "model": "gpt-4"}}),
    ("post", "/v1/embeddings", {"data": "x", "content_type": "text/plain"}),
    ("post", "/v1/embeddings", {"json": {"input": "x" * 5000}}),
    ("get", "/v1/embeddings", {}),
    ("get", "/nothing", {}),
    ("get", "/v1/models", {"headers": {"Authorization": "Bearer wrong"}}),
])
def test_every_error_body_matches_the_error_model(make_client, two_models, method, path, kwargs):
    client = make_client(models=two_models, max_request_bytes=2048, api_keys=("secret",))
    kwargs.setdefault("headers", {"Authorization": "Bearer secret"})
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code >= 400
    assert_matches(ErrorResponse, response.get_json())


def test_an_unexpected_failure_body_matches_the_error_model(client_two, two_models, monkeypatch):
    monkeypatch.setattr(two_models[0].embedder, "embed", lambda sequences, normalize=None, before_forward=None: 1 / 0)
    response = client_two.post("/v1/embeddings", json={"input": "x"})
    assert response.status_code == 500
    assert_matches(ErrorResponse, response.get_json())


def assert_matches_omitting_none(model: type[BaseModel], body) -> None:
    """As assert_matches, for bodies that leave optional fields out rather than send null."""
    assert model.model_validate(body, strict=True).model_dump(mode="json", exclude_none=True) == body


def test_rag_bodies_match_their_models(rag_client):
    from embedding_app.api.rag_responses import (
        CohereEmbedResponse,
        Detokenized,
        RerankResponse,
        TeiRank,
        TeiToken,
        VllmTokens,
    )

    rerank = {"query": "q", "documents": ["a", "b"]}
    assert_matches_omitting_none(RerankResponse, rag_client.post("/v1/rerank", json=rerank).get_json())
    assert_matches_omitting_none(RerankResponse, rag_client.post("/v2/rerank", json={
        **rerank, "return_documents": True}).get_json())
    for rank in rag_client.post("/rerank", json={"query": "q", "texts": ["a"], "return_text": True}).get_json():
        assert_matches(TeiRank, rank)
    assert_matches(CohereEmbedResponse, rag_client.post("/v2/embed", json={
        "texts": ["a"], "embedding_types": ["float", "int8", "binary", "base64"]}).get_json())
    assert_matches(CohereEmbedResponse, rag_client.post("/v1/embed", json={"texts": ["a"]}).get_json())
    for token in rag_client.post("/tokenize", json={"inputs": "a b"}).get_json()[0]:
        assert_matches(TeiToken, token)
    assert_matches(VllmTokens, rag_client.post("/tokenize", json={"prompt": "a b"}).get_json())
    assert_matches(Detokenized, rag_client.post("/detokenize", json={"tokens": [1037]}).get_json())
    assert_matches(Health, rag_client.get("/health").get_json())
    assert_matches(ModelList, rag_client.get("/v1/models").get_json())
