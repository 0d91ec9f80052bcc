"""Real gunicorn with an embedding model and a reranker behind API_KEY, driven by the cohere SDK, LangChain's
Cohere classes and plain requests in the Jina and TEI shapes."""

import json

import cohere
import numpy as np
import pytest
import requests

from harness.server import GunicornServer

KEY = "rag-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUERY = "permission to copy, modify and distribute the software"


@pytest.fixture(scope="module")
def rag_server(output_dir, tiny_model_dir, tiny_reranker_dir):
    """One worker: the tiny embedding model as `tiny`, the tiny cross-encoder as `ranker` (fp32), API_KEY set."""
    with GunicornServer(output_dir / "gunicorn-rag.log", workers=1, QUANTIZE="false", API_KEY=KEY,
                        MODEL_NAME=f"tiny={tiny_model_dir},ranker={tiny_reranker_dir}") as server:
        yield server


@pytest.fixture(scope="module")
def client_v2(rag_server):
    return cohere.ClientV2(base_url=rag_server.url, api_key=KEY)


@pytest.fixture(scope="module")
def documents(texts) -> list[str]:
    return texts[:25]


def openai_vectors(server, texts) -> np.ndarray:
    response = requests.post(f"{server.url}/v1/embeddings", json={"input": texts, "model": "tiny"}, headers=AUTH)
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def test_cohere_rerank_equals_cross_encoder(client_v2, cross_encoder, documents):
    expected = cross_encoder.predict([(QUERY, document) for document in documents])
    response = client_v2.rerank(model="ranker", query=QUERY, documents=documents, top_n=3)
    assert [result.index for result in response.results] == list(np.argsort(-expected, kind="stable")[:3])
    for result in response.results:
        assert abs(result.relevance_score - expected[result.index]) <= 1e-5


def test_cohere_embed_with_every_embedding_type(client_v2, rag_server):
    texts = ["The food was delicious.", "The waiter was friendly."]
    types = ["float", "int8", "uint8", "binary", "ubinary", "base64"]
    response = client_v2.embed(model="tiny", texts=texts, input_type="search_query", embedding_types=types)
    floats = np.array(response.embeddings.float_)
    assert np.abs(floats - openai_vectors(rag_server, texts)).max() <= 1e-6
    assert np.array(response.embeddings.int8).shape == floats.shape
    assert (np.array(response.embeddings.uint8) == np.array(response.embeddings.int8) + 128).all()
    assert np.array(response.embeddings.binary).shape == (2, floats.shape[1] // 8)
    assert (np.array(response.embeddings.ubinary) == np.array(response.embeddings.binary) + 128).all()
    assert len(response.embeddings.base64) == 2 and response.texts == texts and response.id


def test_cohere_v1_client_embeds_and_reranks(rag_server, cross_encoder):
    client = cohere.Client(base_url=rag_server.url, api_key=KEY)
    response = client.embed(model="tiny", texts=["hello"], input_type="search_document")
    assert np.allclose(response.embeddings, openai_vectors(rag_server, ["hello"]), atol=1e-6)
    ranked = client.rerank(model="ranker", query="q", documents=["a", "b"], return_documents=True)
    expected = cross_encoder.predict([("q", "a"), ("q", "b")])
    assert [r.index for r in ranked.results] == list(np.argsort(-expected, kind="stable"))
    assert ranked.results[0].document.text == ["a", "b"][ranked.results[0].index]


def test_cohere_sdk_raises_its_bad_request_error_on_bad_input(client_v2):
    with pytest.raises(cohere.BadRequestError):
        client_v2.rerank(model="tiny", query="q", documents=["a"])  # an embedding model cannot rerank


def test_langchain_cohere_rerank_orders_documents_as_cross_encoder(rag_server, cross_encoder, documents):
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    reranker = CohereRerank(model="ranker", base_url=rag_server.url, cohere_api_key=KEY, top_n=5)
    kept = reranker.compress_documents([Document(page_content=text) for text in documents], QUERY)
    expected = cross_encoder.predict([(QUERY, document) for document in documents])
    assert [doc.page_content for doc in kept] == [documents[i] for i in np.argsort(-expected, kind="stable")[:5]]
    assert all(abs(doc.metadata["relevance_score"] - expected[documents.index(doc.page_content)]) <= 1e-5
               for doc in kept)


def test_langchain_cohere_embeddings_equal_openai_vectors(rag_server):
    from langchain_cohere import CohereEmbeddings

    embeddings = CohereEmbeddings(model="tiny", base_url=rag_server.url, cohere_api_key=KEY)
    texts = ["The food was delicious.", "The waiter was friendly."]
    assert np.abs(np.array(embeddings.embed_documents(texts)) - openai_vectors(rag_server, texts)).max() <= 1e-6
    assert len(embeddings.embed_query("hello")) == openai_vectors(rag_server, ["hello"]).shape[1]


def test_jina_and_tei_shapes_over_http(rag_server, cross_encoder):
    docs = ["Paris is in France.", "Berlin is in Germany.", "Bananas are yellow."]
    expected = cross_encoder.predict([("capital", d) for d in docs])
    jina = requests.post(f"{rag_server.url}/v1/rerank", headers=AUTH, json={
        "model": "ranker", "query": "capital", "documents": docs, "top_n": 2, "return_documents": True}).json()
    assert [r["index"] for r in jina["results"]] == list(np.argsort(-expected, kind="stable")[:2])
    assert jina["usage"]["total_tokens"] > 0 and jina["results"][0]["document"]["text"] in docs
    tei = requests.post(f"{rag_server.url}/rerank", headers=AUTH, json={"query": "capital", "texts": docs}).json()
    assert [r["index"] for r in tei] == list(np.argsort(-expected, kind="stable"))
    assert np.allclose([r["score"] for r in sorted(tei, key=lambda r: r["index"])], expected, atol=1e-5)
    vectors = requests.post(f"{rag_server.url}/embed", headers=AUTH, json={"inputs": docs}).json()
    assert np.abs(np.array(vectors) - openai_vectors(rag_server, docs)).max() <= 1e-6


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank", "/v1/embed", "/v2/embed", "/embed",
                                  "/tokenize", "/detokenize"])
def test_every_new_route_needs_the_key(rag_server, path):
    response = requests.post(f"{rag_server.url}{path}", json={"query": "q", "documents": ["a"]})
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"


BAD = [
    ("/v1/rerank", b'{"query": "q", "documents": [null]}'),
    ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": -1}'),
    ("/v1/rerank", b'{"query": ["q"], "documents": ["a"]}'),
    ("/v1/rerank", b'{"query": "q", "documents": [{"text": 5}]}'),
    ("/v2/rerank", b'{"query": "q", "documents": ["a"], "max_tokens_per_doc": 0}'),
    ("/rerank", b'{"query": "q", "texts": "a"}'),
    ("/rerank", b'{"query": "q", "texts": ["a"], "truncation_direction": "Up"}'),
    ("/v2/embed", b'{"texts": ["a"], "embedding_types": []}'),
    ("/v2/embed", b'{"texts": ["a\\ud800"]}'),
    ("/embed", b'{"inputs": [1, 2]}'),
    ("/tokenize", b'{"prompt": 5}'),
    ("/detokenize", b'{"tokens": [-1]}'),
    ("/v1/rerank", b'{"query": "q", "documents": ["a"]'),
    ("/v1/rerank", b'[]'),
]


@pytest.mark.parametrize("path, body", BAD, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BAD)])
def test_bad_input_gets_an_openai_shaped_4xx(rag_server, path, body):
    response = requests.post(f"{rag_server.url}{path}", data=body,
                             headers={**AUTH, "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_metrics_label_the_new_routes_and_health_lists_both(rag_server):
    requests.post(f"{rag_server.url}/v1/rerank", headers=AUTH, json={"query": "q", "documents": ["a"]})
    metrics = requests.get(f"{rag_server.url}/metrics").text
    assert 'route="/v1/rerank"' in metrics and 'embedding_inputs_total{model="ranker"}' in metrics
    health = requests.get(f"{rag_server.url}/health").json()
    assert [(m["id"], m["capabilities"]) for m in health["models"]] == [("tiny", ["embed"]), ("ranker", ["rerank"])]
    assert json.loads(requests.get(f"{rag_server.url}/openapi.json").text)["paths"]["/v2/rerank"]
