"""QUANTIZE modes on all-MiniLM-L6-v2: every faithful mode stays within the fidelity bounds; what each value times."""

import json
import os
import platform
import subprocess
import sys

import pytest

from embedding_app.config.choices import (
    FAITHFUL_MODES,
    QUANTIZE_MODES,
    UNFAITHFUL_MODES,
)
from embedding_app.inference.quantize import candidates
from harness.engines import engine_of, source_of
from harness.quality import measure_fidelity

from .conftest import DATA

MIN_COSINE = 0.999
MIN_BATCH_INVARIANCE = 0.999
MIN_TOP10_OVERLAP = 0.98
# int8 on a kernel exact only at 7-bit activations (none seen so far: without VNNI, paired weights keep 8 bits):
# QUANTIZE=true does not time it there (int8_available), and an operator who names it gets this, measured 0.9984
# and 0.9725.
FALLBACK_INT8_MIN_COSINE = 0.998
FALLBACK_INT8_TOP10_OVERLAP = 0.96


def bounds(mode: str) -> tuple[float, float]:
    """The min cosine and top-10 overlap a mode must keep on this CPU."""
    from embedding_app.inference.quantize import int8_available

    if mode == "int8" and not int8_available():
        return FALLBACK_INT8_MIN_COSINE, FALLBACK_INT8_TOP10_OVERLAP
    return MIN_COSINE, MIN_TOP10_OVERLAP


@pytest.fixture(scope="module")
def fp32(minilm_dir):
    """all-MiniLM-L6-v2 in fp32: the reference every mode is held to."""
    return engine_of(source_of(minilm_dir))


@pytest.fixture(scope="module")
def sequences(fp32, texts):
    """Passages (tests/data/texts.json) and queries (tests/data/queries.json) as finished token ids."""
    queries = json.loads((DATA / "queries.json").read_text())["queries"]
    return fp32.inputs_for(texts), fp32.inputs_for(queries)


@pytest.fixture(scope="module")
def reference(fp32, sequences):
    passages, queries = sequences
    return fp32.embed(passages), fp32.embed(queries)


@pytest.fixture(scope="module", params=FAITHFUL_MODES)
def fidelity(request, minilm_dir, fp32, sequences, reference):
    embedder = fp32 if request.param == "fp32" else engine_of(source_of(minilm_dir), request.param)
    return request.param, measure_fidelity(embedder, *sequences, *reference)


def test_faithful_mode_keeps_min_cosine_to_fp32(fidelity):
    mode, measured = fidelity
    assert measured.min_cosine >= bounds(mode)[0], measured


def test_faithful_mode_is_batch_invariant(fidelity):
    assert fidelity[1].batch_invariance >= MIN_BATCH_INVARIANCE, fidelity


def test_faithful_mode_keeps_top10_retrieval(fidelity):
    mode, measured = fidelity
    assert measured.top10_overlap >= bounds(mode)[1], measured


FIDELITY_ON_AVX2 = """
import json
from harness.engines import engine_of, source_of
from harness.quality import measure_fidelity
from embedding_app.inference.quantize import candidates
from tests.conftest import DATA, default_model_dir
source = source_of(default_model_dir())
fp32, int8 = engine_of(source), engine_of(source, "int8")
passages = fp32.inputs_for(json.loads((DATA / "texts.json").read_text())["texts"])
queries = fp32.inputs_for(json.loads((DATA / "queries.json").read_text())["queries"])
measured = measure_fidelity(int8, passages, queries, fp32.embed(passages), fp32.embed(queries))
print(json.dumps({"timed_by_true": "int8" in candidates("true")[0], **measured.__dict__}))
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="oneDNN's AVX2 kernel is x86 only")
def test_int8_without_vnni_keeps_every_bound_and_is_timed_by_true():
    # oneDNN capped at AVX2 runs the int16-pair kernel of CPUs without VNNI (AMD Zen 2/3): paired weights.
    result = subprocess.run([sys.executable, "-c", FIDELITY_ON_AVX2], capture_output=True, text=True, timeout=600,
                            check=True, env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"})
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["timed_by_true"], measured
    assert measured["min_cosine"] >= MIN_COSINE and measured["top10_overlap"] >= MIN_TOP10_OVERLAP, measured
    assert measured["batch_invariance"] >= MIN_BATCH_INVARIANCE, measured


@pytest.mark.parametrize("native_bf16", [True, False])
@pytest.mark.parametrize("full_precision_int8", [True, False])
def test_true_times_every_faithful_mode_this_cpu_runs_and_forces_none(monkeypatch, native_bf16, full_precision_int8):
    from embedding_app.inference import quantize

    monkeypatch.setattr(quantize, "int8_available", lambda: full_precision_int8)
    monkeypatch.setattr(quantize, "bf16_native", lambda: native_bf16)
    runs = {"fp32": True, "bf16": native_bf16, "int8": full_precision_int8}
    assert candidates("true") == (tuple(mode for mode in FAITHFUL_MODES if runs[mode]), None)


def test_bf16_counts_as_native_only_with_the_cpu_flag_and_onednn_kernels(monkeypatch):
    import torch

    from embedding_app.inference import quantize

    monkeypatch.setattr(quantize, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert quantize.bf16_native() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    monkeypatch.setattr(quantize, "cpu_flags", lambda: {"avx2", "fma"})
    assert not quantize.bf16_native()


def test_false_is_fp32_alone():
    assert candidates("false") == candidates("fp32") == (("fp32",), "fp32")


@pytest.mark.parametrize("mode", [mode for mode in FAITHFUL_MODES + UNFAITHFUL_MODES if mode != "fp32"])
def test_a_named_mode_is_kept_and_timed_beside_fp32(mode):
    modes, forced = candidates(mode)
    assert forced == mode and sorted(modes) == sorted({mode, "fp32"})


def test_settings_accept_exactly_the_modes():
    assert set(QUANTIZE_MODES) == {"true", "false", *FAITHFUL_MODES, *UNFAITHFUL_MODES}
