"""Real gunicorn (2 workers, packaged all-MiniLM-L6-v2) driven over HTTP by requests and the openai client."""

import base64

import numpy as np
import openai
import pytest
import requests

from harness.server import GunicornServer


@pytest.fixture(scope="module")
def oai(minilm_server):
    return openai.OpenAI(base_url=f"{minilm_server.url}/v1", api_key="unused", max_retries=0)


def test_openai_default_base64_path(oai):
    result = oai.embeddings.create(model="all-MiniLM-L6-v2", input=["hello world", "good night"])
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 384
    assert np.isclose(np.linalg.norm(result.data[0].embedding), 1.0, atol=1e-5)
    assert result.usage.prompt_tokens == result.usage.total_tokens == 8


def test_openai_float_matches_base64(oai):
    packed = oai.embeddings.create(model="all-MiniLM-L6-v2", input="a sentence")
    plain = oai.embeddings.create(model="all-MiniLM-L6-v2", input="a sentence", encoding_format="float")
    assert np.allclose(packed.data[0].embedding, plain.data[0].embedding, atol=1e-7)


def test_openai_raw_base64_is_little_endian_float32(minilm_server, oai):
    raw = oai.embeddings.create(model="all-MiniLM-L6-v2", input="a sentence", encoding_format="base64")
    floats = requests.post(f"{minilm_server.url}/v1/embeddings", json={"input": "a sentence"}).json()
    vector = np.frombuffer(base64.b64decode(raw.data[0].embedding), dtype="<f4")
    assert np.allclose(vector, floats["data"][0]["embedding"], atol=1e-7)


def test_openai_dimensions(oai):
    result = oai.embeddings.create(model="all-MiniLM-L6-v2", input="short", dimensions=64)
    assert len(result.data[0].embedding) == 64


def test_openai_token_ids(oai):
    from_text = oai.embeddings.create(model="all-MiniLM-L6-v2", input="hello world")
    from_ids = oai.embeddings.create(model="all-MiniLM-L6-v2", input=[[7592, 2088]])
    assert np.allclose(from_text.data[0].embedding, from_ids.data[0].embedding, atol=1e-5)


def test_openai_models_list_and_retrieve(oai):
    [model] = oai.models.list().data
    assert model.id == "all-MiniLM-L6-v2" and model.object == "model"
    assert oai.models.retrieve("all-MiniLM-L6-v2").id == model.id
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("gpt-4")


@pytest.mark.parametrize("kwargs, status", [
    ({"input": ""}, 400),
    ({"input": []}, 400),
    ({"input": [[]]}, 400),
    ({"input": ["x"] * 2049}, 400),
    ({"input": "x", "encoding_format": "int4"}, 400),
    ({"input": "x", "dimensions": 0}, 400),
    ({"input": "x", "dimensions": 385}, 400),
    ({"input": [[100000000]]}, 400),
    ({"input": "x", "model": "text-embedding-3-small"}, 404),
])
def test_openai_errors_are_typed_4xx(oai, kwargs, status):
    kwargs.setdefault("model", "all-MiniLM-L6-v2")
    with pytest.raises(openai.APIStatusError) as error:
        oai.embeddings.create(**kwargs)
    assert error.value.status_code == status
    assert set(error.value.body) >= {"message", "type", "param", "code"}


def test_http_errors_are_openai_shaped(minilm_server):
    for response in (requests.get(f"{minilm_server.url}/nothing"),
                     requests.delete(f"{minilm_server.url}/v1/embeddings"),
                     requests.post(f"{minilm_server.url}/v1/embeddings", data=b"{not json",
                                   headers={"Content-Type": "application/json"})):
        assert 400 <= response.status_code < 500
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_both_workers_serve_and_survive_bad_input(minilm_server):
    pids_before = set(minilm_server.worker_pids())
    assert len(pids_before) == 2
    with requests.Session() as session:
        for i in range(20):
            session.post(f"{minilm_server.url}/v1/embeddings", data=b"\xff" * i, headers={"Content-Type": "application/json"})
            assert session.post(f"{minilm_server.url}/v1/embeddings", json={"input": f"text {i}"}).status_code == 200
    assert set(minilm_server.worker_pids()) == pids_before
    assert "Traceback" not in minilm_server.log()


def test_health_and_index(minilm_server):
    assert requests.get(f"{minilm_server.url}/health").json()["status"] == "ok"
    assert requests.get(f"{minilm_server.url}/").json()["model"] == "all-MiniLM-L6-v2"


# --- Several models in one gunicorn: the packaged model (with prompts from MODEL_PROMPTS) and the tiny model from a
# Hub cache (test-org/tiny-bert), each with an operator alias.
MINILM_PROMPTS = '{"all-MiniLM-L6-v2": {"prompts": {"query": "query: ", "passage": "passage: "}}}'
NAMES = [("all-MiniLM-L6-v2", "all-MiniLM-L6-v2", 384), ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", 384),
         ("text-embedding-3-small", "all-MiniLM-L6-v2", 384), ("tiny", "tiny", 32), ("test-org/tiny-bert", "tiny", 32),
         ("tiny-bert", "tiny", 32), ("small-test", "tiny", 32)]


@pytest.fixture(scope="module")
def multi_server(output_dir, hub_cache):
    with GunicornServer(output_dir / "gunicorn-two-models.log", workers=1, QUANTIZE="false",
                        MODEL_NAME="default,tiny=test-org/tiny-bert", HF_HOME=str(hub_cache),
                        MODEL_ALIASES="text-embedding-3-small=default,small-test=tiny",
                        MODEL_PROMPTS=MINILM_PROMPTS) as server:
        yield server


@pytest.fixture(scope="module")
def multi(multi_server):
    return openai.OpenAI(base_url=f"{multi_server.url}/v1", api_key="unused", max_retries=0)


def test_openai_lists_both_models_of_one_server(multi):
    assert [model.id for model in multi.models.list().data] == ["all-MiniLM-L6-v2", "tiny"]


@pytest.mark.parametrize("name, served, dimensions", NAMES)
def test_each_model_answers_to_its_id_hub_id_and_alias(multi, name, served, dimensions):
    result = multi.embeddings.create(model=name, input="hello world")
    assert (result.model, len(result.data[0].embedding)) == (served, dimensions)
    assert multi.models.retrieve(name).id == served


def test_openai_input_type_extension_applies_the_models_query_prompt(multi):
    prompted = multi.embeddings.create(model="all-MiniLM-L6-v2", input="hello world", extra_body={"input_type": "query"})
    by_hand = multi.embeddings.create(model="all-MiniLM-L6-v2", input="query: hello world")
    plain = multi.embeddings.create(model="all-MiniLM-L6-v2", input="hello world")
    assert np.allclose(prompted.data[0].embedding, by_hand.data[0].embedding, atol=1e-6)
    assert prompted.usage.prompt_tokens == by_hand.usage.prompt_tokens > plain.usage.prompt_tokens
    assert not np.allclose(prompted.data[0].embedding, plain.data[0].embedding, atol=1e-3)


def test_unknown_model_among_several_is_a_404_listing_both(multi):
    with pytest.raises(openai.NotFoundError) as error:
        multi.embeddings.create(model="gpt-4", input="x")
    assert "'all-MiniLM-L6-v2', 'tiny'" in error.value.body["message"]


def test_health_reports_both_models(multi_server):
    health = requests.get(f"{multi_server.url}/health").json()
    assert [(model["id"], model["dimensions"]) for model in health["models"]] == [("all-MiniLM-L6-v2", 384), ("tiny", 32)]
    assert health["models"][1]["aliases"] == ["small-test", "test-org/tiny-bert", "tiny-bert"]


def test_truncation_is_counted_in_a_header_and_a_per_model_metric(multi_server):
    from .test_metrics import scrape

    before = scrape(multi_server.url).get(("embedding_truncated_inputs_total", (("model", "tiny"),)), 0)
    response = requests.post(f"{multi_server.url}/v1/embeddings",
                             json={"model": "tiny", "input": ["word " * 40, "short", "word " * 40]})
    assert response.status_code == 200 and response.headers["X-Truncated-Inputs"] == "2"
    assert "X-Truncated-Inputs" not in requests.post(f"{multi_server.url}/v1/embeddings", json={"input": "short"}).headers
    samples = scrape(multi_server.url)
    assert samples[("embedding_truncated_inputs_total", (("model", "tiny"),))] == before + 2
    assert samples[("embedding_inputs_total", (("model", "all-MiniLM-L6-v2"),))] > 0
    assert samples[("embedding_inputs_total", (("model", "tiny"),))] >= 3


def test_metric_model_labels_are_only_served_names_whatever_names_requests_used(multi_server, multi):
    from .test_metrics import scrape

    multi.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input="by Hub id")
    with pytest.raises(openai.NotFoundError):
        multi.embeddings.create(model="made-up-name", input="x")
    labels = {dict(labels)["model"] for (name, labels) in scrape(multi_server.url) if name == "embedding_inputs_total"}
    assert labels == {"all-MiniLM-L6-v2", "tiny"}
