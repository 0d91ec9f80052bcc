"""The Embedder on a tiny random BERT: order, batching, truncation, token ids, vocabulary."""

import numpy as np
import pytest

from embedding_app.config.settings import Settings
from embedding_app.inference.embedder import InputError
from embedding_app.inference.loader import load_engine
from embedding_app.inference.model_source import resolve_model

from .conftest import TINY_MAX_TOKENS


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_special_tokens_wrap_each_text(tiny_embedder):
    [ids] = tiny_embedder.inputs_for(["hello world"])
    assert ids == tiny_embedder.tokenizer("hello world")["input_ids"]


def test_long_text_is_truncated_like_the_tokenizer(tiny_embedder):
    text = "word " * 100
    [ids] = tiny_embedder.inputs_for([text])
    assert len(ids) == TINY_MAX_TOKENS
    assert ids == tiny_embedder.tokenizer(text, truncation=True, max_length=TINY_MAX_TOKENS)["input_ids"]


def test_long_text_is_rejected_when_truncation_is_off(tiny_embedder):
    with pytest.raises(InputError) as error:
        tiny_embedder.add_special_tokens(tiny_embedder.tokenize(["short", "word " * 100]), truncate=False)
    assert error.value.index == 1
    assert str(TINY_MAX_TOKENS) in str(error.value)


def test_out_of_vocabulary_id_names_its_input(tiny_embedder):
    with pytest.raises(InputError) as error:
        tiny_embedder.check_ids([[1, 2], [5, tiny_embedder.info.vocab_size]])
    assert error.value.index == 1


def test_negative_id_is_out_of_vocabulary(tiny_embedder):
    with pytest.raises(InputError):
        tiny_embedder.check_ids([[-1]])


def test_results_come_back_in_input_order(tiny_embedder):
    texts = ["a b c d e f g h", "x", "medium length text here", "y z"]
    together = tiny_embedder.embed(tiny_embedder.inputs_for(texts))
    for i, text in enumerate(texts):
        alone = tiny_embedder.embed(tiny_embedder.inputs_for([text]))[0]
        assert cosine(alone, together[i]) > 0.99999


def test_vectors_are_unit_length(tiny_embedder):
    vectors = tiny_embedder.embed(tiny_embedder.inputs_for(["one", "two three"]))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_token_budget_splits_batches_without_changing_results(tiny_embedder, monkeypatch):
    sequences = tiny_embedder.inputs_for([f"text number {i} " * (i % 5 + 1) for i in range(40)])
    reference = tiny_embedder.embed(sequences)
    batches = []
    monkeypatch.setattr(tiny_embedder, "batch_tokens", 32)
    monkeypatch.setattr(tiny_embedder, "on_forward", lambda size, padding: batches.append(size))
    assert np.allclose(tiny_embedder.embed(sequences), reference, atol=1e-5)
    assert len(batches) > 5 and sum(batches) == 40


def test_pool_type_setting_overrides_the_model_config(tiny_model_dir, tiny_embedder):
    from embedding_app.config.settings import Settings
    from embedding_app.inference.loader import load_engine
    from embedding_app.inference.model_source import resolve_model

    assert tiny_embedder.info.pooling == "mean"  # from the copied 1_Pooling/config.json
    bos = load_engine(resolve_model(str(tiny_model_dir), None), Settings(pool_type="bos"), "fp32")
    sequences = bos.inputs_for(["pooling decides this vector"])
    assert bos.info.pooling == "bos"
    assert cosine(bos.embed(sequences)[0], tiny_embedder.embed(sequences)[0]) < 0.999


@pytest.mark.parametrize("cap, expected", [(8, 8), (1000, TINY_MAX_TOKENS)])
def test_max_tokens_per_input_lowers_but_never_raises_the_model_limit(tiny_model_dir, cap, expected):
    from embedding_app.config.settings import Settings
    from embedding_app.inference.loader import load_engine
    from embedding_app.inference.model_source import resolve_model

    embedder = load_engine(resolve_model(str(tiny_model_dir), None), Settings(max_tokens_per_input=cap), "fp32")
    assert embedder.info.max_tokens == expected
    [ids] = embedder.inputs_for(["word " * 100])
    assert len(ids) == expected


def test_a_token_cap_without_room_for_text_stops_the_load(tiny_model_dir):
    source = resolve_model(str(tiny_model_dir), None)
    with pytest.raises(ValueError, match="MAX_TOKENS_PER_INPUT=2 leaves no room for text"):
        load_engine(source, Settings(max_tokens_per_input=2), "fp32")
