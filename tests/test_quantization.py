"""QUANTIZE modes on all-MiniLM-L6-v2: every faithful mode stays within the fidelity bounds; true picks only those."""

import json

import pytest

from embedding_app.quantize import FAITHFUL_MODES, UNFAITHFUL_MODES, choose_mode
from embedding_app.settings import QUANTIZE_MODES, Settings
from harness.quality import measure_fidelity

from .conftest import DATA

MIN_COSINE = 0.999
MIN_BATCH_INVARIANCE = 0.999
MIN_TOP10_OVERLAP = 0.98


@pytest.fixture(scope="module")
def minilm_source(minilm_dir):
    from embedding_app.model_source import resolve_model

    return resolve_model(str(minilm_dir), None)


@pytest.fixture(scope="module")
def fp32(minilm_source):
    from embedding_app.embedder import Embedder

    return Embedder.load(minilm_source, Settings(), "fp32")


@pytest.fixture(scope="module")
def sequences(fp32, texts):
    """Passages (tests/data/texts.json) and queries (tests/data/queries.json) as finished token ids."""
    queries = json.loads((DATA / "queries.json").read_text())["queries"]
    return fp32.finish(fp32.tokenize(texts), True), fp32.finish(fp32.tokenize(queries), True)


@pytest.fixture(scope="module")
def reference(fp32, sequences):
    passages, queries = sequences
    return fp32.embed(passages), fp32.embed(queries)


@pytest.fixture(scope="module", params=FAITHFUL_MODES)
def fidelity(request, minilm_source, fp32, sequences, reference):
    from embedding_app.embedder import Embedder

    embedder = fp32 if request.param == "fp32" else Embedder.load(minilm_source, Settings(), request.param)
    return measure_fidelity(embedder, *sequences, *reference)


def test_faithful_mode_keeps_min_cosine_to_fp32(fidelity):
    assert fidelity.min_cosine >= MIN_COSINE, fidelity


def test_faithful_mode_is_batch_invariant(fidelity):
    assert fidelity.batch_invariance >= MIN_BATCH_INVARIANCE, fidelity


def test_faithful_mode_keeps_top10_retrieval(fidelity):
    assert fidelity.top10_overlap >= MIN_TOP10_OVERLAP, fidelity


def test_true_picks_bf16_when_the_cpu_has_native_bf16():
    expected = ("bf16", "QUANTIZE=true -> bf16 (cpu has avx512_bf16)")
    assert choose_mode("true", {"avx2", "avx512f", "avx512_bf16"}) == expected
    assert choose_mode("true", {"amx_bf16"})[0] == "bf16"


def test_true_picks_fp32_without_native_bf16():
    mode, reason = choose_mode("true", {"avx2", "avx512f", "avx512_vnni"})
    assert mode == "fp32" and "no native bf16" in reason


@pytest.mark.parametrize("flags", [set(), {"avx512_vnni"}, {"avx512_bf16"}, {"amx_bf16", "amx_int8"}])
def test_true_never_picks_an_unfaithful_mode(flags):
    assert choose_mode("true", flags)[0] in FAITHFUL_MODES


def test_false_is_fp32_and_named_modes_are_kept():
    assert choose_mode("false", {"avx512_bf16"})[0] == "fp32"
    for mode in FAITHFUL_MODES + UNFAITHFUL_MODES:
        assert choose_mode(mode, {"avx512_bf16"})[0] == mode


def test_unfaithful_modes_say_so_in_the_log():
    assert "not faithful" in choose_mode("int8-dynamic", set())[1]


def test_settings_accept_exactly_the_modes():
    assert set(QUANTIZE_MODES) == {"true", "false", *FAITHFUL_MODES, *UNFAITHFUL_MODES}
