"""The padding-free BERT path against transformers' own forward, every pooling, and the padded fallback."""

import numpy as np
import pytest
import torch

from embedding_app.config.choices import POOL_TYPES
from embedding_app.config.settings import Settings
from embedding_app.inference.batching import padded_batches
from embedding_app.inference.embedder import Embedder
from embedding_app.inference.loader import load_engine
from embedding_app.inference.model_source import resolve_model
from embedding_app.inference.packed_bert import pack
from embedding_app.inference.prepacked_linear import GELU_APART, ONEDNN

TEXTS = ["a", "a short sentence", "two words", "x " * 40, "a much longer text " * 12, "mid length text here", "b"]


def hf_pooled(embedder: Embedder, sequences: list[list[int]]) -> np.ndarray:
    """transformers' forward of each sequence alone (no padding anywhere), pooled and normalised."""
    rows = []
    for ids in sequences:
        tokens = torch.tensor([ids])
        states = embedder.model(input_ids=tokens).last_hidden_state.float()
        rows.append(torch.nn.functional.normalize(embedder.pool(states, torch.ones_like(tokens)), dim=-1)[0])
    return torch.stack(rows).numpy()


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


@pytest.mark.parametrize("pooling", POOL_TYPES)
def test_packed_matches_transformers_on_the_tiny_model(tiny_model_dir, pooling):
    embedder = load_engine(resolve_model(str(tiny_model_dir), None), Settings(pool_type=pooling), "fp32")
    assert embedder.packed is not None
    sequences = embedder.inputs_for(TEXTS)
    with torch.inference_mode():
        assert min_cosine(embedder.embed(sequences), hf_pooled(embedder, sequences)) >= 0.99999


@pytest.mark.parametrize("mode, bound", [("fp32", 0.99999), ("bf16", 0.999)])
def test_packed_matches_transformers_on_minilm(minilm_dir, texts, mode, bound):
    embedder = load_engine(resolve_model(str(minilm_dir), None), Settings(), mode)
    assert embedder.packed is not None
    sequences = embedder.inputs_for(texts[:48])
    with torch.inference_mode():
        assert min_cosine(embedder.embed(sequences), hf_pooled(embedder, sequences)) >= bound


def test_packing_groups_cover_every_sequence_once():
    lengths = [256, 250, 200, 120, 40, 38, 37, 12, 5, 3, 3, 1]
    ids, positions, packing = pack([[7] * n for n in lengths])
    assert len(ids) == len(positions) == sum(lengths) == packing.offsets[-1]
    assert positions[lengths[0]] == 0 and positions[lengths[0] - 1] == lengths[0] - 1
    covered = [i for first, end in packing.groups for i in range(first, end)]
    assert covered == list(range(len(lengths)))
    # attention is never padded: a group holds sequences of one length only, and every length has one group
    assert all(len(set(lengths[first:end])) == 1 for first, end in packing.groups)
    assert len(packing.groups) == len(set(lengths))


def test_padded_batches_keep_padding_within_ten_percent_plus_floor():
    rng = np.random.default_rng(0)
    lengths = sorted(rng.integers(3, 257, 500).tolist(), reverse=True)
    batches = padded_batches(lengths, budget=8192)
    assert [i for first, end in batches for i in range(first, end)] == list(range(len(lengths)))
    for first, end in batches:
        padded, real = (end - first) * lengths[first], sum(lengths[first:end])
        assert padded <= 8192 or end - first == 1
        assert padded <= 1.10 * real + 64


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory, minilm_dir):
    """A tiny random RoBERTa (not a BERT: the packed path does not take it) with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    directory = tmp_path_factory.mktemp("tiny-roberta")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    torch.manual_seed(0)
    config = RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                           vocab_size=len(tokenizer), max_position_embeddings=80, pad_token_id=0)
    RobertaModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_unsupported_architecture_uses_padded_batches_with_the_same_results(roberta_dir):
    embedder = load_engine(resolve_model(str(roberta_dir), None), Settings(), "fp32")
    assert embedder.packed is None and "roberta" in embedder.fallback
    sequences = embedder.inputs_for(TEXTS)
    padding = []
    embedder.on_forward = lambda size, pad: padding.append(pad)
    with torch.inference_mode():
        assert min_cosine(embedder.embed(sequences), hf_pooled(embedder, sequences)) >= 0.99999
    assert 0 < sum(padding) <= 0.10 * sum(map(len, sequences)) + 64 * len(padding)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # torch's int8 deprecation
def test_the_load_log_says_how_many_matrix_multiplications_run_pre_packed(tiny_model_dir):
    source = resolve_model(str(tiny_model_dir), None)
    embedder = load_engine(source, Settings(kernel_cache_dir=""), "fp32")
    layers = embedder.linears()
    onednn = [layer for layer in layers if embedder.choice.kernels.get(layer.shape) in (ONEDNN, GELU_APART)]
    assert len(layers) == 4 * embedder.model.config.num_hidden_layers
    assert all(layer.prepacked for layer in onednn)  # the kernel measured faster is the one that runs
    assert embedder.describe_path() == (
        f"packed batches, {len(onednn)} of {len(layers)} matrix multiplications pre-packed for oneDNN")
    assert f"0 of {len(layers)}" in load_engine(source, Settings(), "int8-dynamic").describe_path()  # torch modules


def test_a_roberta_style_model_takes_inputs_as_long_as_its_positions_allow(roberta_dir):
    # RoBERTa numbers positions from pad_token_id + 1: of its 80 position embeddings, 79 hold tokens here.
    embedder = load_engine(resolve_model(str(roberta_dir), None), Settings(), "fp32")
    assert embedder.info.max_tokens == 80 - 1
    [longest] = embedder.inputs_for(["word " * 200])
    assert len(longest) == 79 and embedder.embed([longest]).shape == (1, 32)
