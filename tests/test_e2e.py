"""Real gunicorn (2 workers, packaged all-MiniLM-L6-v2) driven over HTTP by requests and the openai client."""

import base64

import numpy as np
import openai
import pytest
import requests


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
