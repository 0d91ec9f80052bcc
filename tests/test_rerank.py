"""Reranking through Flask's test client: scores equal sentence-transformers' CrossEncoder, shapes, limits, errors."""

import json

import numpy as np
import pytest
import torch

from embedding_app.config.settings import Settings, SettingsError, settings_from_env
from embedding_app.inference.loader import load_engine
from embedding_app.inference.model_source import resolve_model
from embedding_app.inference.reranker import Reranker, longest_first

QUERY = "permission to copy, modify and distribute the software"
from .conftest import TINY_RERANKER_MAX_TOKENS as MAX_TOKENS


@pytest.fixture(scope="session")
def documents(texts) -> list[str]:
    """Real passages: short ones scored whole, long ones truncated with the query (longest_first)."""
    return texts[:40]


def rerank(client, path="/v1/rerank", **body):
    response = client.post(path, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def scores_by_index(results, key="relevance_score") -> np.ndarray:
    return np.array([item[key] for item in sorted(results, key=lambda item: item["index"])], dtype=np.float32)


def test_scores_equal_cross_encoder_predict_and_ranks_are_identical(rag_client, cross_encoder, documents):
    body = rerank(rag_client, query=QUERY, documents=documents)
    expected = cross_encoder.predict([(QUERY, document) for document in documents])
    assert np.abs(scores_by_index(body["results"]) - expected).max() <= 1e-5
    assert [item["index"] for item in body["results"]] == list(np.argsort(-expected, kind="stable"))


def test_raw_scores_are_the_logits(rag_client, cross_encoder, documents):
    body = rerank(rag_client, query=QUERY, documents=documents[:8], raw_scores=True)
    expected = cross_encoder.predict([(QUERY, d) for d in documents[:8]], activation_fn=torch.nn.Identity())
    assert np.abs(scores_by_index(body["results"]) - expected).max() <= 1e-5


def test_padded_path_scores_equal_the_packed_path(tiny_reranker, cross_encoder, documents):
    padded = Reranker(tiny_reranker.embedder.model, tiny_reranker.embedder.tokenizer, tiny_reranker.embedder.info, 8192)
    padded.packed = None
    pairs, _ = padded.pairs(padded.tokenize([QUERY])[0], padded.tokenize(documents), truncate=True)
    expected = cross_encoder.predict([(QUERY, document) for document in documents])
    assert np.abs(padded.score(pairs) - expected).max() <= 1e-5


@pytest.mark.parametrize("first", [1, 5, 20, 31, 32, 33, 60, 100])
@pytest.mark.parametrize("second", [1, 7, 30, 31, 32, 61, 200])
def test_pair_truncation_is_the_tokenizers_longest_first(tiny_reranker, first, second):
    tokenizer = tiny_reranker.embedder.tokenizer
    a, b = " ".join(["alpha"] * first), " ".join(["beta"] * second)
    expected = tokenizer(a, b, truncation=True, max_length=MAX_TOKENS)
    reranker = tiny_reranker.embedder
    [(ids, types)], _ = reranker.pairs(reranker.tokenize([a])[0], reranker.tokenize([b]), truncate=True)
    assert ids == expected["input_ids"] and types == expected["token_type_ids"]
    assert longest_first(first, second, MAX_TOKENS - 3) == (expected["input_ids"].count(tokenizer.convert_tokens_to_ids("alpha")),
                                                            expected["input_ids"].count(tokenizer.convert_tokens_to_ids("beta")))


def test_top_n_and_documents_come_back_best_first(rag_client):
    documents = ["Paris is the capital of France.", {"text": "Berlin is in Germany."}, "Bananas are yellow."]
    body = rerank(rag_client, query="capital of France", documents=documents, top_n=2, return_documents=True)
    assert body["model"] == "tiny-reranker" and len(body["results"]) == 2
    scores = [item["relevance_score"] for item in body["results"]]
    assert scores == sorted(scores, reverse=True)
    texts = [d if isinstance(d, str) else d["text"] for d in documents]
    assert all(item["document"]["text"] == texts[item["index"]] for item in body["results"])
    assert body["usage"]["total_tokens"] > 0 and body["meta"]["billed_units"]["search_units"] == 1


def test_every_rerank_route_answers_alike(rag_client):
    body = {"query": "capital of France", "documents": ["Paris", "Berlin", "Rome"]}
    answers = [rerank(rag_client, path, **body) for path in ("/v1/rerank", "/v2/rerank", "/rerank")]
    assert answers[0]["results"] == answers[1]["results"] == answers[2]["results"]
    assert "document" not in answers[0]["results"][0]


def test_tei_shape_on_rerank_gets_teis_answer(rag_client):
    jina = rerank(rag_client, query="capital", documents=["Paris", "Berlin"], raw_scores=True)
    tei = rag_client.post("/rerank", json={"query": "capital", "texts": ["Paris", "Berlin"], "raw_scores": True,
                                           "return_text": True}).get_json()
    assert [(r["index"], r["score"], r["text"]) for r in tei] == [
        (r["index"], r["relevance_score"], ["Paris", "Berlin"][r["index"]]) for r in jina["results"]]


def test_a_long_pair_is_truncated_visibly(rag_client):
    response = rag_client.post("/v1/rerank", json={"query": "q", "documents": ["word " * 500, "short"]})
    assert response.status_code == 200 and response.headers["X-Truncated-Inputs"] == "1"
    assert response.get_json()["usage"]["total_tokens"] == MAX_TOKENS + 5  # 64 + [CLS] q [SEP] short [SEP]


@pytest.mark.parametrize("body, param, code", [
    ({"query": "q", "documents": []}, "documents", "invalid_value"),
    ({"query": "", "documents": ["a"]}, "query", "invalid_value"),
    ({"query": "q", "documents": ["a", ""]}, "documents[1]", "invalid_value"),
    ({"query": "q", "documents": ["a", "b\ud800"]}, "documents[1]", "invalid_value"),
    ({"query": "q", "documents": [{"txt": "a"}]}, "documents[0]", None),
    ({"query": "q", "documents": [3]}, "documents[0]", None),
    ({"query": "q", "documents": "a"}, "documents", "invalid_value"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n", "invalid_value"),
    ({"query": "q", "documents": ["a"], "top_n": "3"}, "top_n", "invalid_value"),
    ({"query": "q", "documents": ["a"], "model": "all-MiniLM-L6-v2"}, "model", "unsupported_model"),
    ({"query": "q", "documents": ["a"], "model": "nope"}, "model", "model_not_found"),
    ({"query": "q", "documents": ["a"], "surprise": 1}, "surprise", "unknown_parameter"),
    ({"documents": ["a"]}, "query", "missing_parameter"),
    ({"query": "q", "texts": [""]}, "texts[0]", "invalid_value"),
])
def test_bad_rerank_requests_get_a_named_4xx(rag_client, tiny_source, body, param, code):
    body = {**body, "model": tiny_source.served_name} if body.get("model") == "all-MiniLM-L6-v2" else body
    response = rag_client.post("/v1/rerank" if "texts" not in body else "/rerank", json=body)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["param"] == param and (code is None or error["code"] == code), error


def test_limits_apply_to_documents(make_client, tiny_source, tiny_embedder, tiny_reranker):
    from embedding_app.runtime.registry import ServedModel

    models = [ServedModel(tiny_source, tiny_embedder), tiny_reranker]
    strict = make_client(models=models, truncate=False, max_inputs=3, max_tokens_per_request=30)
    too_many = strict.post("/v1/rerank", json={"query": "q", "documents": ["a"] * 4}).get_json()["error"]
    assert too_many["code"] == "too_many_inputs" and too_many["param"] == "documents"
    too_long = strict.post("/v1/rerank", json={"query": "q", "documents": ["a", "word " * 100]}).get_json()["error"]
    assert too_long["param"] == "documents[1]" and "per pair" in too_long["message"]
    tokens = strict.post("/v1/rerank", json={"query": "q", "documents": ["word " * 20] * 2}).get_json()["error"]
    assert tokens["code"] == "too_many_tokens"


def test_a_reranker_asked_to_embed_is_a_clear_400(rag_client):
    for path, body in (("/v1/embeddings", {"input": "x"}), ("/v2/embed", {"texts": ["x"]}), ("/embed", {"inputs": "x"})):
        error = rag_client.post(path, json={**body, "model": "tiny-reranker"}).get_json()["error"]
        assert error["code"] == "unsupported_model" and "/v1/rerank" in error["message"]


def test_models_show_what_each_model_can_do(rag_client, tiny_source):
    cards = {card["id"]: card["capabilities"] for card in rag_client.get("/v1/models").get_json()["data"]}
    assert cards == {tiny_source.served_name: ["embed"], "tiny-reranker": ["rerank"]}
    health = {model["id"]: model for model in rag_client.get("/health").get_json()["models"]}
    assert health["tiny-reranker"]["capabilities"] == ["rerank"] and health["tiny-reranker"]["dimensions"] is None


def test_a_cross_encoder_is_detected_from_its_config(tiny_reranker_dir, tiny_model_dir):
    assert resolve_model(str(tiny_reranker_dir), None).task == "rerank"
    assert resolve_model(str(tiny_model_dir), None).task == "embed"


def test_the_rerank_marker_names_the_task(tiny_model_dir):
    [spec] = settings_from_env({"MODEL_NAME": f"ranker=rerank:{tiny_model_dir}"}).models
    assert (spec.name, spec.source, spec.task) == ("ranker", str(tiny_model_dir), "rerank")
    with pytest.raises(SettingsError, match="marker"):
        settings_from_env({"MODEL_NAME": "rerank:"})


def test_an_embedding_model_marked_rerank_refuses_to_load_with_a_random_head(tiny_model_dir):
    from embedding_app.inference.model_source import ModelSourceError, ModelSpec

    source = resolve_model(ModelSpec("fake", str(tiny_model_dir), task="rerank"), None)
    with pytest.raises(ModelSourceError, match="not a cross-encoder"):
        load_engine(source, Settings(), "fp32")


def test_an_identity_activation_in_config_gives_raw_scores(tmp_path, tiny_reranker_dir, cross_encoder):
    import shutil

    directory = shutil.copytree(tiny_reranker_dir, tmp_path / "identity")
    config = json.loads((directory / "config.json").read_text())
    config["sentence_transformers"] = {"activation_fn": "torch.nn.modules.linear.Identity"}
    (directory / "config.json").write_text(json.dumps(config))
    reranker = load_engine(resolve_model(str(directory), None), Settings(), "fp32")
    pairs, _ = reranker.pairs(reranker.tokenize(["q"])[0], reranker.tokenize(["a", "b"]), True)
    expected = cross_encoder.predict([("q", "a"), ("q", "b")], activation_fn=torch.nn.Identity())
    assert np.abs(reranker.score(pairs) - expected).max() <= 1e-5



@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_quantized_rerankers_score_close_to_fp32(tiny_reranker, cross_encoder, documents, mode):
    reranker = load_engine(tiny_reranker.source, Settings(), mode)
    pairs, _ = reranker.pairs(reranker.tokenize([QUERY])[0], reranker.tokenize(documents), truncate=True)
    expected = cross_encoder.predict([(QUERY, document) for document in documents])
    assert np.abs(reranker.score(pairs) - expected).max() <= 0.05


def test_a_cross_encoder_without_token_types_runs_padded_and_equals_cross_encoder(tmp_path, minilm_dir, texts):
    from sentence_transformers import CrossEncoder
    from transformers import (
        AutoTokenizer,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]  # as DistilBERT's own tokenizer says
    torch.manual_seed(2)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=37,
                              max_position_embeddings=MAX_TOKENS, num_labels=1, initializer_range=0.2)
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path / "distil")
    tokenizer.save_pretrained(tmp_path / "distil")
    reranker = load_engine(resolve_model(str(tmp_path / "distil"), None), Settings(), "fp32")
    assert reranker.packed is None and "DistilBert" in reranker.describe_path()
    pairs, _ = reranker.pairs(reranker.tokenize([QUERY])[0], reranker.tokenize(texts[:20]), truncate=True)
    reference = CrossEncoder(str(tmp_path / "distil"), device="cpu", max_length=MAX_TOKENS)
    expected = reference.predict([(QUERY, text) for text in texts[:20]])
    assert np.abs(reranker.score(pairs) - expected).max() <= 1e-5
