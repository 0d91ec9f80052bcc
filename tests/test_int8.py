"""The faithful int8 layer: its kernel against a float reference of the same arithmetic, fallbacks, calibration."""

import json
import os
import platform
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from embedding_app.inference import int8_linear
from embedding_app.inference.int8_linear import PRECISIONS, SIDE_ONEDNN_ROWS, Int8Linear, quantize_rows
from embedding_app.inference.int8_mode import (
    OUTLIER_COLUMNS,
    QuantizedLinear,
    calibrate,
    mark_outliers,
)
from embedding_app.inference.int8_weights import FULL, PAIRED, pair_sums
from embedding_app.inference.quantize import build_int8, int8_available

ROWS = (1, 7, 300, 2500)


def problem(inputs: int = 384, outputs: int = 1152, rows: int = 300, seed: int = 0):
    """A weight, bias, outlier columns and inputs whose outlier columns really are 30x larger."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(outputs, inputs, generator=generator) / inputs ** 0.5
    bias = torch.randn(outputs, generator=generator)
    outliers = torch.tensor([3, 50, 51, inputs - 1])
    states = torch.randn(rows, inputs, generator=generator) + 0.3
    states[:, outliers] *= 30
    return weight, bias, outliers, states


def assert_same_arithmetic(layer: Int8Linear, states: torch.Tensor) -> None:
    """layer(states) equals float_reference up to fp32 output rounding and, in a row, one rounding tie."""
    got, expected = layer(states), float_reference(layer, states)
    main = states.index_fill(1, layer.outliers, 0.0)
    step = (main.amax(dim=1).clamp(min=0) - main.amin(dim=1).clamp(max=0)) / layer.levels  # one quantization step
    # A .5 tie may round apart in the layer's fused multiply-add: one step of one input times the largest weight.
    bound = step[:, None] * (layer.wq.float() * layer.w_scale[:, None]).abs().max() + 1e-5 * expected.abs().max()
    assert torch.all((got - expected).abs() <= bound), float((got - expected).abs().max())


def float_reference(layer: Int8Linear, states: torch.Tensor) -> torch.Tensor:
    """The layer's arithmetic written out on its own: fp32 quantization as specified, then float64 sums."""
    main = states.index_fill(1, layer.outliers, 0.0)
    low, high = main.amin(dim=1).clamp(max=0), main.amax(dim=1).clamp(min=0)
    scale = ((high - low) / layer.levels).clamp(min=1e-12)
    inverse = 1 / scale
    zero = torch.round(-low * inverse)
    values = torch.clamp(torch.round(main * inverse[:, None] + zero[:, None]), 0, layer.levels).double()
    scale, zero = scale.double(), zero.double()
    weight = layer.wq.double() * layer.w_scale.double()[:, None]
    out = ((values - zero[:, None]) * scale[:, None]) @ weight.T
    out += states[:, layer.outliers].double() @ layer.extra_weight[:, :-2].double().T + layer.bias.double()
    return out.float()


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).detach().abs().max() / expected.detach().abs().max())


@pytest.mark.parametrize("rows", ROWS)
def test_the_layer_matches_a_float_reference_of_its_arithmetic_for_any_row_count(rows):
    weight, bias, outliers, states = problem(rows=rows)
    layer = Int8Linear(weight, bias, outliers)
    with torch.inference_mode():
        assert_same_arithmetic(layer, states)


@pytest.mark.parametrize("rows", ROWS)
def test_the_fast_kernel_and_its_slow_fallback_give_the_same_numbers(rows):
    weight, bias, outliers, states = problem(inputs=1536, outputs=384, rows=rows)
    fast, slow = Int8Linear(weight, bias, outliers), Int8Linear(weight, bias, outliers)
    slow.prepacked_weight = None  # what a CPU without the oneDNN kernel runs, at the same precision
    with torch.inference_mode():
        assert relative_error(fast(states), slow(states)) <= 1e-6


def test_without_onednn_int8_the_layer_runs_its_reference_and_stays_correct(monkeypatch):
    def missing(*_args):
        raise RuntimeError("no onednn int8 here")

    weight, bias, outliers, states = problem()
    monkeypatch.setattr(torch.ops.onednn, "qlinear_prepack", missing)
    layer = Int8Linear(weight, bias, outliers)
    assert not layer.prepacked and "reference" in layer.kernel and layer.levels == PRECISIONS[0][0]
    with torch.inference_mode():
        assert_same_arithmetic(layer, states)


SATURATING = {  # _exact probes of CPUs without VNNI
    # vpmaddubsw (oneDNN's and fbgemm's AVX2 kernels): adjacent columns' u8 x s8 products added in int16
    "adjacent int16 pairs": lambda self, packed, levels: levels * int(pair_sums(self.wq.int()).max()) < 2 ** 15,
    "any int16 pairs": lambda self, packed, levels: 2 * levels * int(self.wq.abs().max()) < 2 ** 15,
}


@pytest.mark.parametrize("kernel, levels, scheme", [("adjacent int16 pairs", 255, PAIRED), ("any int16 pairs", 127, FULL)])
def test_a_kernel_that_saturates_gets_the_first_exact_precision(monkeypatch, kernel, levels, scheme):
    monkeypatch.setattr(Int8Linear, "_exact", SATURATING[kernel])
    weight, bias, outliers, states = problem()
    layer = Int8Linear(weight, bias, outliers)
    assert (layer.levels, layer.scheme) == (levels, scheme)
    with torch.inference_mode():
        assert_same_arithmetic(layer, states)


def test_paired_weights_keep_every_adjacent_pair_within_int16_and_more_than_7_bits():
    from embedding_app.inference.int8_weights import (
        EXTRA_SHARE,
        binding_columns,
        quantize_weight,
    )

    weight = problem(inputs=1536, outputs=384)[0]
    extra = binding_columns(weight, 1536 // EXTRA_SHARE)
    wq, _ = quantize_weight(weight.index_fill(1, torch.tensor(extra), 0.0), PAIRED)
    assert 255 * int(pair_sums(wq.int()).max()) < 2 ** 15
    assert float(wq.abs().amax(dim=1).float().mean()) > 96  # 7-bit weights would stop at 63
    assert len(set(extra)) == len(extra) == 1536 // EXTRA_SHARE and torch.all(wq[:, extra] == 0)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="oneDNN's AVX2 kernel is x86 only")
def test_without_vnni_the_real_kernel_runs_8_bit_activations_exactly():
    # oneDNN capped at AVX2 runs the int16-pair kernel of CPUs without VNNI (AMD Zen 2/3, Intel before Cascade Lake).
    code = ("import json, torch; from tests.test_int8 import problem, float_reference; "
            "from embedding_app.inference.int8_linear import Int8Linear; "
            "w, b, o, x = problem(inputs=1536, outputs=384, rows=700); layer = Int8Linear(w, b, o); "
            "got, want = layer(x.clone()), float_reference(layer, x); "
            "print(json.dumps([layer.levels, layer.scheme, layer.prepacked, float((got - want).abs().max()), "
            "float(want.abs().max())]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                            env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    levels, scheme, prepacked, error, largest = json.loads(result.stdout.strip().splitlines()[-1])
    assert (levels, scheme, prepacked) == (255, PAIRED, True), result.stderr
    assert error <= 1e-3 * largest  # a saturated int16 pair would be off by thousands of steps


def test_the_exactness_probe_matches_what_the_cpu_computes():
    weight, bias, outliers, _ = problem(inputs=1536, outputs=384)
    layer = Int8Linear(weight, bias, outliers)
    if not layer.prepacked:
        pytest.skip("this torch has no oneDNN int8 kernel")
    worst = torch.where(layer.wq > 0, layer.levels, 0).to(torch.uint8)  # what the probe sends, at the chosen bits
    exact = worst.double() @ layer.wq.double().T
    assert relative_error(layer.int_gemm(worst) / layer.w_scale, exact.float()) <= 1e-6


def test_the_layer_is_close_to_fp32_and_fuses_gelu():
    weight, bias, outliers, states = problem()
    with torch.inference_mode():
        expected = F.linear(states, weight, bias)
        assert relative_error(Int8Linear(weight, bias, outliers)(states), expected) <= 0.02
        gelu = Int8Linear(weight, bias, outliers, gelu="tanh")(states)
        assert torch.allclose(gelu, F.gelu(Int8Linear(weight, bias, outliers)(states), approximate="tanh"))


@pytest.mark.parametrize("rows", [300, SIDE_ONEDNN_ROWS + 88])  # a batch's side GEMM on F.linear, then on oneDNN
def test_a_row_alone_gives_the_same_numbers_as_inside_a_batch(rows):
    weight, bias, outliers, states = problem(rows=rows)
    layer = Int8Linear(weight, bias, outliers)
    with torch.inference_mode():
        batch, quantized = layer(states), _quantized(layer, states)
        for row in (0, 17, rows - 1):
            alone = _quantized(layer, states[row:row + 1])
            assert all(torch.equal(part, whole[row:row + 1]) for part, whole in zip(alone, quantized))
            # The int8 sums are exact; only the fp32 side GEMM's rounding may differ with the row count (MKL and
            # oneDNN pick their kernels by shape): a few units in the last place, where a batch-wide scale would
            # move 1e-2.
            assert torch.allclose(layer(states[row:row + 1])[0], batch[row], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_the_side_gemm_runs_onednn_for_a_batch_and_f_linear_for_a_few_texts():
    weight, bias, outliers, states = problem(rows=SIDE_ONEDNN_ROWS)
    layer = Int8Linear(weight, bias, outliers)
    side, calls = layer.side, []
    side.run = lambda inputs: calls.append("onednn") or side.fused(inputs)
    side.reference = lambda inputs: calls.append("F.linear") or F.linear(inputs, side.weight)
    with torch.inference_mode():
        few, batch = layer(states[:SIDE_ONEDNN_ROWS - 1]), layer(states)
    assert calls == ["F.linear", "onednn"]
    assert torch.allclose(few, batch[:SIDE_ONEDNN_ROWS - 1], rtol=1e-5, atol=1e-5)


def _quantized(layer: Int8Linear, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What the layer quantizes rows to: uint8 values, scales and the side GEMM's inputs."""
    return quantize_rows(rows.contiguous(), layer.levels, layer.outliers, layer.keep)


def test_quantized_rows_keep_zero_exact_and_use_the_whole_range():
    states = torch.tensor([[0.0, -1.0, 3.0], [0.0, 0.0, 0.0], [0.0, 4.0, 1.0]])
    values, _, side = quantize_rows(states.clone(), 255)
    zero = -side[:, -1]
    assert torch.equal(values[:, 0].float(), zero)  # 0.0 maps exactly to the zero point
    assert values[0].max() == 255 and values[0].min() == 0 and values[2].max() == 255
    assert torch.all(values[1] == zero[1])


@pytest.mark.parametrize("levels", [255, 127])
def test_the_compiled_quantization_rounds_each_row_to_its_own_grid_outside_the_outliers(levels):
    generator = torch.Generator().manual_seed(3)
    states = torch.randn(333, 387, generator=generator) * torch.rand(333, 1, generator=generator) * 8
    states[5] = 0.0  # a row of zeros keeps a usable scale
    states[7] = states[7].abs()  # a row with no negative value still holds 0 in its range
    outliers = torch.tensor([3, 100, 386])
    states[:, outliers] = torch.randn(333, 3, generator=generator) * 50
    states[5, outliers] = 0.0
    before = states.clone()
    values, scale, side = quantize_rows(states, levels, outliers)
    assert torch.equal(states, before)  # read, never written
    zero = -side[:, -1]
    assert values.dtype == torch.uint8 and int(values.max()) <= levels
    assert torch.equal(zero, zero.round()) and bool((zero >= 0).all()) and bool((zero <= levels).all())
    inside = states.index_fill(1, outliers, 0.0)  # outlier columns count as 0: the range is the other columns'
    assert torch.allclose(scale, (inside.amax(dim=1).clamp(min=0) - inside.amin(dim=1).clamp(max=0)) / levels)
    grid = inside.double() / scale.double()[:, None] + zero.double()[:, None]  # where each value lies on its grid
    assert float((values.double() - grid.clamp(0, levels)).abs().max()) <= 0.5 + 1e-3  # rounded to the nearest step
    assert torch.equal(values[:, outliers], zero[:, None].expand(-1, 3).to(torch.uint8))
    assert torch.allclose(side[:, :3], states[:, outliers] / scale[:, None], rtol=1e-6)
    assert torch.allclose(side[:, 3], 1 / scale, rtol=1e-6)
    assert bool((values[5] == zero[5]).all()) and int(zero[7]) == 0


def test_the_quantization_loop_compiles_where_no_cache_directory_is_writable(monkeypatch):
    from numba.core import caching

    from embedding_app.inference import int8_kernels

    states = torch.randn(9, 40)
    expected = quantize_rows(states, 255)
    int8_kernels.quantize_kernel.cache_clear()
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])  # as on a read-only file system
    try:
        with pytest.raises(RuntimeError, match="no locator"):  # what numba does there when asked to cache
            int8_kernels.numba_jit(cache=True)(int8_kernels._quantize)
        for got, want in zip(quantize_rows(states, 255), expected):
            assert torch.equal(got, want)
    finally:
        int8_kernels.quantize_kernel.cache_clear()


def test_calibration_picks_the_same_columns_for_query_key_and_value(minilm_model_and_tokenizer):
    model, tokenizer = minilm_model_and_tokenizer
    outliers = calibrate(model, tokenizer)
    attention = "encoder.layer.0.attention.self."
    assert torch.equal(outliers[attention + "query"], outliers[attention + "key"])
    assert torch.equal(outliers[attention + "query"], outliers[attention + "value"])
    assert all(len(columns) == OUTLIER_COLUMNS for columns in outliers.values())


def test_the_packed_path_runs_every_matrix_multiplication_in_int8(minilm_model_and_tokenizer):
    from embedding_app.inference.packed_bert import PackedBert

    packed = PackedBert(build_int8(*minilm_model_and_tokenizer))
    parts = [part for layer in packed.layers for part in layer.linears()]
    assert all(isinstance(part, Int8Linear) for part in parts)
    # oneDNN's int8 GEMM wherever this torch has it (8-bit weights with VNNI, paired weights without).
    has_kernel = Int8Linear(torch.randn(64, 64), None, torch.tensor([0])).prepacked
    assert all(part.prepacked == has_kernel for part in parts)


def test_models_off_the_packed_path_get_int8_modules():
    model = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 8))
    for module in model:
        if isinstance(module, nn.Linear):
            module.int8_outliers = torch.tensor([0, 1])
    states = torch.randn(2, 5, 64)
    expected = model(states)
    from embedding_app.inference.int8_mode import replace_linears

    replaced = replace_linears(model)
    assert isinstance(replaced[0], QuantizedLinear)
    with torch.inference_mode():
        got = replaced(states)
    assert got.shape == (2, 5, 8) and relative_error(got, expected) <= 0.05


def test_availability_says_whether_the_fast_kernel_runs_at_full_precision(monkeypatch):
    layer = Int8Linear(torch.randn(64, 64), None, torch.tensor([0]))
    assert int8_available() == (layer.prepacked and layer.levels == 255)
    monkeypatch.setattr(int8_linear.Int8Linear, "_exact", SATURATING["adjacent int16 pairs"])
    assert int8_available()
    monkeypatch.setattr(int8_linear.Int8Linear, "_exact", SATURATING["any int16 pairs"])
    assert not int8_available()
    monkeypatch.setattr(int8_linear.Int8Linear, "_exact", lambda self, packed, levels: False)
    assert not int8_available()


@pytest.fixture(scope="module")
def minilm_model_and_tokenizer(minilm_dir):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(minilm_dir).eval(), AutoTokenizer.from_pretrained(minilm_dir)


def test_mark_outliers_marks_every_linear(minilm_model_and_tokenizer):
    model = mark_outliers(*minilm_model_and_tokenizer)
    assert all(hasattr(module, "int8_outliers") for module in model.modules() if type(module) is nn.Linear)


def test_a_layer_leaves_its_input_bit_exact():
    weight, bias, outliers, states = problem(rows=2500)
    before = states.clone()
    with torch.inference_mode():
        Int8Linear(weight, bias, outliers)(states)
    assert torch.equal(states, before)


def test_building_int8_without_a_tokenizer_says_why():
    with pytest.raises(ValueError, match="tokenizer"):
        build_int8(nn.Linear(4, 4), None)


def test_a_cached_int8_choice_keeps_its_outlier_columns_and_a_later_start_skips_calibrating(
        monkeypatch, tiny_source, tmp_path):
    from embedding_app.config.settings import Settings
    from embedding_app.inference import int8_mode, loader

    settings = Settings(kernel_cache_dir=str(tmp_path))
    first = loader.load_engine(tiny_source, settings, "int8")
    linears = {name for name, module in first.model.named_modules() if type(module) is nn.Linear}
    assert set(first.choice.outliers) == linears and first.choice.outliers == first.model.int8_outlier_columns

    def no_calibrating(*args, **kwargs):
        raise AssertionError("calibrated again")

    monkeypatch.setattr(int8_mode, "calibrate", no_calibrating)
    again = loader.load_engine(tiny_source, settings, "int8")
    assert again.choice.cached and again.model.int8_outlier_columns == first.choice.outliers
    texts = again.add_special_tokens(again.tokenize(["outlier columns", "come from the cache"]), truncate=True)[0]
    assert torch.equal(torch.as_tensor(again.embed(texts)), torch.as_tensor(first.embed(texts)))


@pytest.mark.parametrize("damage", ["missing layer", "out of range", "unsorted", "not a list", "a float", "too few"])
def test_outlier_columns_that_do_not_fit_the_model_are_calibrated_again(tiny_model_dir, damage):
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(tiny_model_dir), AutoModel.from_pretrained(tiny_model_dir)
    good = mark_outliers(model, tokenizer).int8_outlier_columns
    name = next(iter(good))
    damaged = {**good, name: {"out of range": [10**6], "unsorted": good[name][::-1], "not a list": "0,1",
                              "a float": [0.5], "too few": good[name][:-1], "missing layer": None}[damage]}
    if damage == "missing layer":
        del damaged[name]
    assert len(good[name]) >= 2  # so that reversed columns are out of order
    model = AutoModel.from_pretrained(tiny_model_dir)
    assert mark_outliers(model, tokenizer, known=damaged).int8_outlier_columns == good  # calibrated: the same columns
    assert mark_outliers(model, tokenizer, known=good).int8_outlier_columns == good


def test_new_weights_in_the_same_directory_make_a_new_cache_key(tiny_model_dir, tmp_path):
    from embedding_app.inference.choice_cache import weights_stamp

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    before = weights_stamp(model)
    assert [entry[0] for entry in before] == ["model.safetensors"]
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0")  # re-saved: another size, another time
    assert weights_stamp(model) != before
    assert weights_stamp(tmp_path / "missing") == []
