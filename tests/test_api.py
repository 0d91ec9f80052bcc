"""The HTTP contract through Flask's test client on the tiny model: shapes, order, usage, errors."""

import base64
import json
import subprocess
import sys

import numpy as np
import pytest

from embedding_app.api.error_catalogue import CATALOGUE
from harness.server import ROOT

from .conftest import TINY_MAX_TOKENS


def embed(client, **body):
    return client.post("/v1/embeddings", json=body)


def assert_error(response, status, param=None, code=None):
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    assert CATALOGUE[error["code"]][:2] == (status, error["type"])
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


def test_single_string_gives_one_embedding(client, tiny_embedder):
    body = embed(client, input="hello world", model=tiny_embedder.info.id).get_json()
    assert body["object"] == "list" and body["model"] == tiny_embedder.info.id
    [item] = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert len(item["embedding"]) == tiny_embedder.info.dimensions


def test_usage_counts_special_tokens_and_no_padding(client, tiny_embedder):
    texts = ["hello world", "a much longer sentence than the first one"]
    expected = sum(len(tiny_embedder.tokenizer(t)["input_ids"]) for t in texts)
    assert embed(client, input=texts).get_json()["usage"] == {"prompt_tokens": expected, "total_tokens": expected}


def test_both_routes_answer_the_same(client):
    first = client.post("/v1/embeddings", json={"input": "same"}).get_json()
    second = client.post("/embeddings", json={"input": "same"}).get_json()
    assert first == second


def test_base64_matches_float(client):
    floats = embed(client, input=["one", "two"], encoding_format="float").get_json()["data"]
    packed = embed(client, input=["one", "two"], encoding_format="base64").get_json()["data"]
    for plain, b64 in zip(floats, packed):
        assert np.allclose(np.frombuffer(base64.b64decode(b64["embedding"]), "<f4"), plain["embedding"], atol=1e-7)


def test_token_ids_match_text(client, tiny_embedder):
    ids = tiny_embedder.tokenize(["hello world"])[0]
    from_text = embed(client, input="hello world").get_json()
    from_ids = embed(client, input=ids).get_json()
    from_id_lists = embed(client, input=[ids, ids]).get_json()
    assert np.allclose(from_text["data"][0]["embedding"], from_ids["data"][0]["embedding"], atol=1e-6)
    assert np.allclose(from_ids["data"][0]["embedding"], from_id_lists["data"][1]["embedding"], atol=1e-6)
    assert from_text["usage"] == from_ids["usage"]


def test_long_token_ids_are_truncated_like_text(client, tiny_embedder):
    ids = tiny_embedder.tokenize(["word " * 50])[0]
    assert embed(client, input=ids).get_json()["usage"]["prompt_tokens"] == TINY_MAX_TOKENS


def test_dimensions_shortens_and_renormalises(client):
    [item] = embed(client, input="hello", dimensions=8).get_json()["data"]
    assert len(item["embedding"]) == 8
    assert np.isclose(np.linalg.norm(item["embedding"]), 1.0, atol=1e-5)


def test_models_list_and_retrieve(client, tiny_embedder):
    listing = client.get("/v1/models").get_json()
    assert listing["object"] == "list"
    [card] = listing["data"]
    assert card["id"] == tiny_embedder.info.id and card["object"] == "model"
    assert isinstance(card["created"], int) and card["owned_by"]
    assert client.get(f"/v1/models/{card['id']}").get_json() == card
    assert_error(client.get("/v1/models/gpt-4"), 404, code="model_not_found")


def test_health_and_index(client):
    assert client.get("/health").get_json()["status"] == "ok"
    assert client.get("/").status_code == 200


BAD_BODIES = [
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": [[]]}, "input[0]"),
    ({"input": ["ok", ""]}, "input[1]"),
    ({"input": ["ok", 3]}, "input[1]"),
    ({"input": [[1, 2], [3, "x"]]}, "input[1][1]"),
    ({"input": [1, 2.5]}, "input[1]"),
    ({"input": [True]}, "input[0]"),
    ({"input": None}, "input"),
    ({"input": {"text": "x"}}, "input"),
    ({"input": 42}, "input"),
    ({}, "input"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "dimensions": 0}, "dimensions"),
    ({"input": "x", "dimensions": "8"}, "dimensions"),
    ({"input": "x", "dimensions": 100000}, "dimensions"),
    ({"input": "x", "model": 5}, "model"),
    ({"input": "x", "surprise": 1}, "surprise"),
    ({"input": [10 ** 9]}, "input"),
    ({"input": [[1], [10 ** 9]]}, "input[1]"),
]


@pytest.mark.parametrize("body, param", BAD_BODIES)
def test_bad_bodies_get_400_naming_the_param(client, body, param):
    assert_error(client.post("/v1/embeddings", json=body), 400, param=param)


def test_unknown_model_gets_404(client):
    assert_error(embed(client, input="x", model="text-embedding-3-small"), 404, param="model", code="model_not_found")


@pytest.mark.parametrize("raw", [b"{", b"", b"[1, 2]", b'"text"', b'{"input": NaN}', b'{"input": "a", "input": "b"}',
                                 b"\xff\xfe{}", b"[" * 100000 + b"]" * 100000])
def test_malformed_json_gets_400(client, raw):
    assert_error(client.post("/v1/embeddings", data=raw, content_type="application/json"), 400)


def test_wrong_content_type_gets_415(client):
    assert_error(client.post("/v1/embeddings", data="input=x", content_type="text/plain"), 415)


def test_too_many_inputs(make_client):
    client = make_client(max_inputs=3)
    error = assert_error(embed(client, input=["a"] * 4), 400, param="input", code="too_many_inputs")
    assert "3" in error["message"] and "MAX_INPUTS" in error["message"]
    assert embed(client, input=["a"] * 3).status_code == 200


def test_too_many_tokens_per_request(make_client):
    client = make_client(max_tokens_per_request=10)
    assert_error(embed(client, input=["one two three four five six"] * 2), 400, code="too_many_tokens")


def test_truncate_off_rejects_long_input_with_its_index(make_client):
    client = make_client(truncate=False)
    error = assert_error(embed(client, input=["short", "word " * 50]), 400, param="input[1]")
    assert str(TINY_MAX_TOKENS) in error["message"]


def test_truncate_off_rejects_a_huge_text_counting_only_past_the_limit(make_client):
    client = make_client(truncate=False)
    error = assert_error(embed(client, input=["short", "word " * 400_000]), 400, param="input[1]")
    assert "has at least" in error["message"] and str(TINY_MAX_TOKENS) in error["message"]


def test_truncate_off_rejects_long_token_ids_too(make_client, tiny_embedder):
    client = make_client(truncate=False)
    ids = tiny_embedder.tokenize(["word " * 50])[0]
    error = assert_error(embed(client, input=[[7592], ids]), 400, param="input[1]")
    assert str(len(ids) + 2) in error["message"] and str(TINY_MAX_TOKENS) in error["message"]


def test_body_over_the_limit_gets_413_naming_the_limit(make_client):
    client = make_client(max_request_bytes=2048)
    error = assert_error(embed(client, input="x" * 5000), 413, code="request_too_large")
    assert "2048" in error["message"] and "MAX_REQUEST_BYTES" in error["message"]


def test_default_body_limit_fits_2048_inputs_of_1000_characters(client):
    from embedding_app.config.settings import Settings

    body = json.dumps({"input": ["word " * 200] * 2048}).encode()
    assert len(body) < Settings().max_request_bytes
    response = client.post("/v1/embeddings", data=body, content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert len(response.get_json()["data"]) == 2048


def test_out_of_vocabulary_ids_name_the_langchain_flag(client):
    error = assert_error(embed(client, input=[100_256]), 400, param="input")
    assert "check_embedding_ctx_length=False" in error["message"]


def test_lone_surrogate_is_a_400_not_a_500(client):
    response = client.post("/v1/embeddings", data=b'{"input": ["ok", "\\udc80"]}', content_type="application/json")
    assert_error(response, 400, param="input[1]")


def test_unknown_route_and_method(client):
    assert_error(client.get("/v2/nothing"), 404, code="not_found")
    assert_error(client.get("/v1/embeddings"), 405, code="method_not_allowed")


def test_user_field_is_accepted_and_ignored(client):
    assert embed(client, input="x", user="user-1234").status_code == 200


def test_unexpected_failure_is_an_openai_shaped_500_without_traceback(client, tiny_embedder, monkeypatch, caplog):
    def explode(sequences, normalize=None, before_forward=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(tiny_embedder, "embed", explode)
    error = assert_error(embed(client, input="x"), 500)
    assert error["type"] == "server_error" and "boom" not in error["message"]
    assert "RuntimeError: boom" in caplog.text


def test_method_not_allowed_lists_the_allowed_methods(client):
    response = client.put("/v1/embeddings", json={"input": "x"})
    assert_error(response, 405, code="method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_integral_floats_are_integers_as_in_json_schema(client):
    assert len(embed(client, input="x", dimensions=8.0).get_json()["data"][0]["embedding"]) == 8
    assert embed(client, input=[101.0, 102.0]).status_code == 200
    assert_error(embed(client, input="x", dimensions=8.5), 400, param="dimensions")


def test_the_request_path_never_imports_torch():
    # torch may only be imported inside a worker (post_fork): the app, blueprints and service must not pull it in.
    code = ("import sys, embedding_app, embedding_app.api.routes, embedding_app.api.system, embedding_app.api.docs;"
            "from embedding_app import create_app; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_truncated_inputs_are_counted_in_a_response_header(client):
    response = embed(client, input=["word " * 50, "short", "word " * 50])
    assert response.status_code == 200 and response.headers["X-Truncated-Inputs"] == "2"
    assert response.get_json()["usage"]["prompt_tokens"] == 2 * TINY_MAX_TOKENS + 3  # the body keeps OpenAI's shape


def test_no_truncation_header_when_nothing_was_truncated(client):
    assert "X-Truncated-Inputs" not in embed(client, input=["short", "texts"]).headers


def test_truncation_header_is_readable_by_browser_scripts_when_cors_is_on(make_client):
    client = make_client(cors_allow_origins=("https://app.example",))
    response = client.post("/v1/embeddings", json={"input": "word " * 50}, headers={"Origin": "https://app.example"})
    assert "X-Truncated-Inputs" in response.headers["Access-Control-Expose-Headers"]
