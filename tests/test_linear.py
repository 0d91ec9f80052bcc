"""Pre-packed oneDNN Linear layers (GELU fused) against F.linear, and their fallback."""

import pytest
import torch
from torch import nn

from embedding_app.inference import prepacked_linear as linear_module
from embedding_app.inference.prepacked_linear import fastest_linear

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def layer(dtype: torch.dtype, inputs: int = 384, outputs: int = 1536) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(inputs, outputs).to(dtype)


def can_prepack(dtype: torch.dtype) -> bool:
    """What torch says oneDNN can pre-pack on this CPU (bf16 needs avx512bw/vl/dq or avx_ne_convert)."""
    return dtype == torch.float32 or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.float() - expected.float()).abs().max() / expected.float().abs().max())


@needs_onednn
@pytest.mark.parametrize("dtype, bound", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("gelu", [None, "none", "tanh"])
def test_packed_linear_matches_f_linear_for_any_row_count(dtype, bound, gelu):
    module = layer(dtype)
    fast = fastest_linear(module, gelu)
    # The oneDNN path where this CPU has it, F.linear where it has not (bf16 on an AVX2-only CPU): both checked.
    assert fast.prepacked == can_prepack(dtype)
    with torch.inference_mode():
        for rows in (1, 7, 300, 2500):
            states = torch.randn(rows, 384).to(dtype)
            expected = module(states)
            if gelu:
                expected = torch.nn.functional.gelu(expected, approximate=gelu)
            assert relative_error(fast(states), expected) <= bound


def test_a_kernel_that_disagrees_at_load_falls_back_to_f_linear(monkeypatch):
    monkeypatch.setitem(linear_module.TOLERANCE, torch.float32, -1.0)  # no result can agree
    module = layer(torch.float32, 64, 32)
    fast = fastest_linear(module, "none")
    assert not fast.prepacked
    states = torch.randn(5, 64)
    with torch.inference_mode():
        assert torch.equal(fast(states), torch.nn.functional.gelu(module(states)))


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # torch's int8 deprecation
def test_a_quantized_layer_runs_as_its_own_module():
    module = torch.ao.quantization.quantize_dynamic(nn.Sequential(layer(torch.float32, 64, 32)), {nn.Linear},
                                                    dtype=torch.qint8)[0]
    fast = fastest_linear(module, "tanh")
    assert not fast.prepacked
    states = torch.randn(5, 64)
    with torch.inference_mode():
        assert torch.equal(fast(states), torch.nn.functional.gelu(module(states), approximate="tanh"))
