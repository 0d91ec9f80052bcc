"""Cohere's and TEI's embed shapes, compact embedding types and tokenize, through Flask's test client."""

import base64

import numpy as np
import pytest
from sentence_transformers.util.quantization import quantize_embeddings

from embedding_app.api.compact import INT8_SCALE

TEXTS = ["The food was delicious.", "The waiter was friendly.", "Permission is hereby granted, free of charge."]


def post(client, path, **body):
    response = client.post(path, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def openai_vectors(client, texts, **extra) -> np.ndarray:
    data = post(client, "/v1/embeddings", input=texts, **extra)["data"]
    return np.array([item["embedding"] for item in data], dtype=np.float32)


@pytest.fixture
def by_type(rag_client) -> dict:
    body = post(rag_client, "/v2/embed", texts=TEXTS, embedding_types=["float", "int8", "uint8", "binary", "ubinary",
                                                                       "base64"])
    assert body["response_type"] == "embeddings_by_type" and body["texts"] == TEXTS
    assert body["meta"]["billed_units"]["input_tokens"] > 0
    return {kind: np.array(values) if kind != "base64" else values for kind, values in body["embeddings"].items()}


def test_cohere_float_equals_openai_embeddings(rag_client, by_type):
    assert np.abs(by_type["float"] - openai_vectors(rag_client, TEXTS)).max() <= 1e-6


def test_binary_types_equal_sentence_transformers_quantize_embeddings(by_type):
    floats = by_type["float"].astype(np.float32)
    assert (by_type["binary"] == quantize_embeddings(floats, "binary")).all()
    assert (by_type["ubinary"] == quantize_embeddings(floats, "ubinary")).all()
    assert by_type["binary"].shape[1] == floats.shape[1] // 8


def test_int8_and_uint8_use_the_documented_fixed_range(by_type):
    floats = by_type["float"]
    expected = np.clip(np.rint(floats * np.sqrt(floats.shape[1]) * INT8_SCALE), -128, 127)
    assert (by_type["int8"] == expected).all() and by_type["int8"].min() >= -128 and by_type["int8"].max() <= 127
    assert (by_type["uint8"] == by_type["int8"] + 128).all()


def test_base64_is_little_endian_float32(by_type):
    decoded = np.array([np.frombuffer(base64.b64decode(value), "<f4") for value in by_type["base64"]])
    assert np.abs(decoded - by_type["float"]).max() <= 1e-6


def test_input_type_applies_the_models_prompt(make_client, two_models):
    client = make_client(models=list(reversed(two_models)))  # tiny-prompted first: query / passage prompts
    for cohere_type, prompt in (("search_query", "query: "), ("search_document", "passage: ")):
        body = post(client, "/v2/embed", texts=TEXTS[:1], input_type=cohere_type, embedding_types=["float"])
        expected = openai_vectors(client, [prompt + TEXTS[0]])  # the model has no default prompt
        assert np.abs(np.array(body["embeddings"]["float"]) - expected).max() <= 1e-6


def test_output_dimension_and_v1_without_types(rag_client):
    body = post(rag_client, "/v2/embed", texts=TEXTS, output_dimension=8)
    assert np.abs(np.array(body["embeddings"]["float"]) - openai_vectors(rag_client, TEXTS, dimensions=8)).max() <= 1e-6
    v1 = post(rag_client, "/v1/embed", texts=TEXTS)
    assert v1["response_type"] == "embeddings_floats" and np.allclose(v1["embeddings"], openai_vectors(rag_client, TEXTS))


def test_truncate_none_refuses_start_keeps_the_end(rag_client, tiny_embedder):
    long = " ".join(f"w{i}" for i in range(60))
    error = rag_client.post("/v2/embed", json={"texts": ["ok", long], "truncate": "NONE"}).get_json()["error"]
    assert error["param"] == "texts[1]"
    start = post(rag_client, "/v2/embed", texts=[long], truncate="START")["embeddings"]["float"]
    ids = tiny_embedder.tokenize([long], whole=True)[0][-tiny_embedder.max_text_tokens:]
    assert np.allclose(start, openai_vectors(rag_client, [ids]), atol=1e-6)


def test_tei_embed_answers_a_bare_array_equal_to_openai(rag_client):
    assert np.abs(np.array(post(rag_client, "/embed", inputs=TEXTS)) - openai_vectors(rag_client, TEXTS)).max() <= 1e-6
    [single] = post(rag_client, "/embed", inputs=TEXTS[0])
    assert np.allclose(single, openai_vectors(rag_client, TEXTS[:1])[0], atol=1e-6)
    raw = np.array(post(rag_client, "/embed", inputs=TEXTS, normalize=False))
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1)
    assert np.allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), openai_vectors(rag_client, TEXTS), atol=1e-6)
    short = np.array(post(rag_client, "/embed", inputs=TEXTS, dimensions=8))
    assert np.allclose(short, openai_vectors(rag_client, TEXTS, dimensions=8), atol=1e-6)


def test_tokenize_ids_are_what_usage_counts(rag_client, texts):
    for text in texts[:20]:
        vllm = post(rag_client, "/tokenize", prompt=text)
        usage = post(rag_client, "/v1/embeddings", input=text)["usage"]["prompt_tokens"]
        if vllm["count"] <= vllm["max_model_len"]:
            assert vllm["count"] == usage
            bare = post(rag_client, "/tokenize", prompt=text, add_special_tokens=False)["tokens"]
            assert vllm["tokens"][1:-1] == bare  # token-id input is bare ids: the server adds [CLS] and [SEP]
            assert np.allclose(openai_vectors(rag_client, [bare]), openai_vectors(rag_client, [text]), atol=1e-6)
        else:  # a longer text is truncated: usage counts the model's maximum
            assert usage == vllm["max_model_len"]


def test_tei_tokenize_gives_token_objects_with_offsets(rag_client):
    [tokens] = post(rag_client, "/tokenize", inputs="hello world")
    assert [(t["text"], t["special"], t["start"], t["stop"]) for t in tokens] == [
        ("[CLS]", True, None, None), ("hello", False, 0, 5), ("world", False, 6, 11), ("[SEP]", True, None, None)]
    [bare] = post(rag_client, "/tokenize", inputs=["hello world"], add_special_tokens=False)
    assert [t["id"] for t in bare] == [t["id"] for t in tokens[1:-1]]
    assert post(rag_client, "/detokenize", tokens=[t["id"] for t in tokens]) == {"prompt": "hello world"}


@pytest.mark.parametrize("path, body, param", [
    ("/v2/embed", {"texts": []}, "texts"),
    ("/v2/embed", {"texts": ["a", ""]}, "texts[1]"),
    ("/v2/embed", {"texts": "a"}, "texts"),
    ("/v2/embed", {"texts": ["a"], "embedding_types": ["float16"]}, "embedding_types[0]"),
    ("/v2/embed", {"texts": ["a"], "input_type": "query"}, "input_type"),
    ("/v2/embed", {"texts": ["a"], "output_dimension": 0}, "output_dimension"),
    ("/v2/embed", {"texts": ["a"], "output_dimension": 4096}, "output_dimension"),
    ("/v2/embed", {"texts": ["a"], "truncate": "MIDDLE"}, "truncate"),
    ("/v2/embed", {"texts": ["a"], "images": ["x"]}, "images"),
    ("/embed", {"inputs": []}, "inputs"),
    ("/embed", {"inputs": ""}, "inputs"),
    ("/embed", {"inputs": "a", "prompt_name": "nope"}, "prompt_name"),
    ("/embed", {"inputs": "a", "normalize": "yes"}, "normalize"),
    ("/tokenize", {"inputs": "a", "prompt": "a"}, "inputs"),
    ("/tokenize", {}, "inputs"),
    ("/detokenize", {"tokens": [10 ** 9]}, "tokens"),
    ("/detokenize", {"tokens": []}, "tokens"),
])
def test_bad_requests_get_a_named_4xx(rag_client, path, body, param):
    response = rag_client.post(path, json=body)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.get_json()["error"]["param"] == param


def test_truncation_is_visible_on_cohere_embed_and_rerank(rag_client):
    long = " ".join(f"w{i}" for i in range(60))
    embedded = rag_client.post("/v2/embed", json={"texts": [long, "short", "a b c d"], "max_tokens": 3})
    assert embedded.status_code == 200 and embedded.headers["X-Truncated-Inputs"] == "2"
    ranked = rag_client.post("/v2/rerank", json={"query": "q", "documents": ["a b c d", "a", long],
                                                 "max_tokens_per_doc": 2})
    assert ranked.status_code == 200 and ranked.headers["X-Truncated-Inputs"] == "2"
    uncut = rag_client.post("/v2/rerank", json={"query": "q", "documents": ["a b"]}).get_json()["usage"]
    assert ranked.get_json()["usage"]["total_tokens"] == 3 * uncut["total_tokens"] - 1  # q + 2, 1, 2 tokens


def test_int8_keeps_float_top10_retrieval_on_real_texts(minilm_dir, texts):
    import json

    from embedding_app.api.compact import to_int8
    from embedding_app.config.settings import Settings
    from embedding_app.inference.loader import load_engine
    from embedding_app.inference.model_source import resolve_model
    from harness.quality import overlap, top_k

    from .conftest import DATA

    embedder = load_engine(resolve_model(str(minilm_dir), None), Settings(), "fp32")
    passages = embedder.embed(embedder.inputs_for(texts))
    queries = embedder.embed(embedder.inputs_for(json.loads((DATA / "queries.json").read_text())["queries"]))
    int8_queries, int8_passages = to_int8(queries).astype(np.int32), to_int8(passages).astype(np.int32)
    ranked = np.argsort(-(int8_queries @ int8_passages.T), axis=1, kind="stable")[:, :10]
    assert overlap(top_k(queries, passages), ranked) >= 0.97
