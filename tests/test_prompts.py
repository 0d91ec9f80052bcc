"""Prompts: input_type and prompt_name pick the model's prompt, as sentence-transformers applies it (fp32)."""

from __future__ import annotations

import numpy as np
import pytest

from embedding_app.config.settings import Settings
from embedding_app.inference.loader import load_engine
from embedding_app.inference.model_source import resolve_model
from embedding_app.runtime.registry import ServedModel

from .conftest import PROMPTS, with_prompts
from .test_api import assert_error, embed

FIDELITY = 0.99999


@pytest.fixture(scope="module")
def prompted_minilm_dir(tmp_path_factory, minilm_dir):
    """The packaged all-MiniLM-L6-v2 with e5-style prompts and query as its default prompt."""
    return with_prompts(minilm_dir, tmp_path_factory.mktemp("minilm") / "minilm-prompted", prompts=PROMPTS,
                        default_prompt_name="query")


@pytest.fixture(scope="module")
def reference(prompted_minilm_dir):
    """sentence-transformers' own model on that directory."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(prompted_minilm_dir), device="cpu")


@pytest.fixture(scope="module")
def prompted_minilm(prompted_minilm_dir):
    source = resolve_model(str(prompted_minilm_dir), None)
    return ServedModel(source, load_engine(source, Settings(), "fp32"))


@pytest.fixture
def minilm_client(make_client, prompted_minilm):
    return make_client(models=[prompted_minilm])


def vectors(response) -> np.ndarray:
    assert response.status_code == 200, response.get_data(as_text=True)
    return np.array([item["embedding"] for item in response.get_json()["data"]])


def assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    cosines = np.sum(ours * theirs, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosines.min() >= FIDELITY, cosines


@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_prompt_name_vectors_equal_sentence_transformers(minilm_client, reference, texts, prompt_name):
    sample = texts[:12]  # short and long ones: the prompt is inside the 256 tokens the model keeps
    ours = vectors(embed(minilm_client, input=sample, prompt_name=prompt_name))
    assert_same(ours, reference.encode(sample, prompt_name=prompt_name, normalize_embeddings=True))


@pytest.mark.parametrize("input_type, prompt_name", [("query", "query"), ("document", "passage"),
                                                     ("passage", "passage")])
def test_input_type_vectors_equal_sentence_transformers_with_that_prompt(minilm_client, reference, texts,
                                                                         input_type, prompt_name):
    # Not encode_document: sentence-transformers 6 always defines an empty "document" prompt, so for an e5-style
    # model (query/passage) it embeds documents without their "passage: " prompt; the server uses it.
    ours = vectors(embed(minilm_client, input=texts[:6], input_type=input_type))
    assert_same(ours, reference.encode(texts[:6], prompt_name=prompt_name, normalize_embeddings=True))


def test_input_type_query_equals_sentence_transformers_encode_query(minilm_client, reference, texts):
    ours = vectors(embed(minilm_client, input=texts[:6], input_type="query"))
    assert_same(ours, reference.encode_query(texts[:6], normalize_embeddings=True))


def test_input_type_without_a_matching_prompt_applies_no_prompt_not_the_default(make_client, two_models,
                                                                                tiny_model_dir, tmp_path):
    directory = with_prompts(tiny_model_dir, tmp_path / "query-only", prompts={"query": "query: "},
                             default_prompt_name="query")
    source = resolve_model(str(directory), None)
    client = make_client(models=[ServedModel(source, two_models[0].embedder)])  # the same tiny weights, loaded once
    document = embed(client, input="hello", input_type="document").get_json()
    plain_text = embed(client, input=[two_models[0].embedder.tokenize(["hello"])[0]]).get_json()  # ids: no prompt
    assert document["usage"] == plain_text["usage"]
    assert np.allclose(document["data"][0]["embedding"], plain_text["data"][0]["embedding"])


def test_the_default_prompt_applies_when_the_request_names_none(minilm_client, reference, texts):
    ours = vectors(embed(minilm_client, input=texts[:4]))
    assert_same(ours, reference.encode(texts[:4], normalize_embeddings=True))  # sentence-transformers uses it too
    with_query = reference.encode(texts[:4], prompt_name="query", normalize_embeddings=True)
    assert_same(ours, with_query)


def test_the_prompt_changes_the_vector(minilm_client):
    query, passage = (vectors(embed(minilm_client, input="what is a cat", input_type=kind))[0]
                      for kind in ("query", "document"))
    assert float(query @ passage) < 0.999


def test_usage_counts_the_prompt_tokens(client_two, two_models):
    tokenizer = two_models[1].embedder.tokenizer
    text = "how long is a piece of string"
    usage = embed(client_two, input=text, model="tiny-prompted", input_type="query").get_json()["usage"]
    expected = len(tokenizer(PROMPTS["query"] + text)["input_ids"])
    assert usage["prompt_tokens"] == usage["total_tokens"] == expected
    assert expected > len(tokenizer(text)["input_ids"])


def test_token_id_inputs_get_no_prompt(client_two, two_models):
    ids = two_models[1].embedder.tokenize(["hello world"])[0]
    plain = embed(client_two, input=[ids], model="tiny-prompted").get_json()
    prompted = embed(client_two, input=[ids], model="tiny-prompted", input_type="query").get_json()
    assert plain["usage"] == prompted["usage"]
    assert np.allclose(plain["data"][0]["embedding"], prompted["data"][0]["embedding"])


def test_truncation_keeps_the_prompt_and_the_first_tokens(client_two):
    long_text = "word " * 50  # far past the tiny model's 16 tokens
    prompted = embed(client_two, input=long_text, model="tiny-prompted", input_type="query")
    assert prompted.get_json()["usage"]["prompt_tokens"] == 16
    assert prompted.headers["X-Truncated-Inputs"] == "1"
    direct = embed(client_two, input=PROMPTS["query"] + long_text, model="tiny-prompted")
    assert np.allclose(vectors(prompted), vectors(direct))


def test_a_prompt_name_the_model_lacks_is_a_400_listing_its_prompts(client_two):
    error = assert_error(embed(client_two, input="x", model="tiny-prompted", prompt_name="search"), 400,
                         param="prompt_name")
    assert "query" in error["message"] and "passage" in error["message"]


def test_a_prompt_name_on_a_model_without_prompts_is_a_400(client_two):
    error = assert_error(embed(client_two, input="x", prompt_name="query"), 400, param="prompt_name")
    assert "MODEL_PROMPTS" in error["message"]


def test_input_type_on_a_model_without_that_prompt_embeds_without_one(client_two):
    # As sentence-transformers' encode_query / encode_document: clients may send input_type to every model.
    plain = embed(client_two, input="hello there").get_json()
    for input_type in ("query", "document"):
        typed = embed(client_two, input="hello there", input_type=input_type).get_json()
        assert typed["usage"] == plain["usage"]
        assert np.allclose(typed["data"][0]["embedding"], plain["data"][0]["embedding"])


def test_input_type_and_prompt_name_together_are_a_400(client_two):
    body = {"input": "x", "model": "tiny-prompted", "input_type": "query", "prompt_name": "query"}
    assert_error(embed(client_two, **body), 400, param="prompt_name")


def test_an_unknown_input_type_is_a_400(client_two):
    assert_error(embed(client_two, input="x", model="tiny-prompted", input_type="search"), 400, param="input_type")
