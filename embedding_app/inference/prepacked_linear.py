"""Linear layers for the packed path: oneDNN with the weight pre-packed once at load and GELU fused in.

Against F.linear, a weight reordered once into oneDNN's blocked layout runs the model's GEMMs faster in bf16 and
fp32 (F.linear reorders bf16 weights on every call and sends fp32 to MKL; figures: BENCHMARKS.md, "What was tried
for bf16 (and fp32) closer to the roofline"), and GELU fused into the up-projection saves a pass over its 4x-wide
output where oneDNN's erf is cheap (AVX-512); on AVX2 it costs more than that pass, so there the GEMM runs alone and
torch's in-place GELU after it.
Where oneDNN is missing or disagrees with F.linear at load, the layer stays on F.linear; which of its kernels runs is
measured on this CPU at load (embedding_app/inference/kernel_choice.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)
PREPACK_DTYPES = (torch.float32, torch.bfloat16)
PREPACK_ROWS_HINT = 1024  # oneDNN picks the weight's layout for this many rows; requests pack hundreds to thousands
# Agreement with F.linear at load, relative to the output's scale: rounding differs, a wrong kernel does not.
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2}
# A layer's kernels, by the names the load log, /health and /metrics show. "onednn" fuses a layer's GELU into the GEMM;
# "onednn then gelu" runs torch's in-place GELU after it. One core, 2300 x 384 @ 1536 x 384 fp32 on AVX2 code (a Zen 5
# under bench.cpuid_mask): 26.0 ms fused, 22.4 apart (the GEMM alone 20.8); with AVX-512, 11.2 fused, 11.9 apart.
ONEDNN, GELU_APART, F_LINEAR = "onednn", "onednn then gelu", "F.linear"


class LinearLayer:
    """A matrix multiplication of the packed path, called on [tokens, in_features] states.

    prepacked_weight is the weight in oneDNN's layout when the layer runs from one, else None (the default):
    the load log counts the layers that have one, and the kernel choice may drop it (use(F_LINEAR)). kernel names
    what a layer with no choice to make runs, for the log and /health.
    """

    prepacked_weight: torch.Tensor | None = None
    kernel: str | None = None

    @property
    def prepacked(self) -> bool:
        """Whether the layer runs a pre-packed oneDNN weight."""
        return self.prepacked_weight is not None


class PrepackedLinear(LinearLayer):
    """x @ weight.T + bias from a pre-packed oneDNN weight (else F.linear), then GELU ("none" or "tanh") if given."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, gelu: str | None = None):
        self.weight, self.bias, self.gelu = weight.detach(), None if bias is None else bias.detach(), gelu
        self.attr, self.algorithm = ("gelu", gelu) if gelu else ("none", "")
        self.prepacked_weight = _prepack_weight(self)
        self.run = self.fused if self.prepacked else self.reference

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        return self.run(states)

    def candidates(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """Every kernel this layer can run here, by name: what the kernel choice times."""
        if not self.prepacked:
            return {F_LINEAR: self.reference}
        return {ONEDNN: self.fused} | ({GELU_APART: self.gelu_apart} if self.gelu else {}) | {F_LINEAR: self.reference}

    def use(self, kernel: str) -> None:
        """Run kernel (a name from candidates()) from now on; F.linear frees the pre-packed copy of the weight."""
        # A name this layer lacks (a hand-edited cache) changes nothing.
        self.run = self.candidates().get(kernel, self.run)
        if kernel == F_LINEAR:
            self.prepacked_weight = None

    def fused(self, states: torch.Tensor) -> torch.Tensor:
        """oneDNN's GEMM with the GELU (if any) as its post-op."""
        return torch.ops.mkldnn._linear_pointwise(states, self.prepacked_weight, self.bias, self.attr, [],
                                                  self.algorithm)

    def gelu_apart(self, states: torch.Tensor) -> torch.Tensor:
        """oneDNN's GEMM alone, then torch's GELU in place."""
        out = torch.ops.mkldnn._linear_pointwise(states, self.prepacked_weight, self.bias, "none", [], "")
        return torch.ops.aten.gelu_(out, approximate=self.gelu)

    @property
    def shape(self) -> str:
        """What the kernel choice depends on: dtype, in x out features, fused GELU."""
        outputs, inputs = self.weight.shape
        return f"{str(self.weight.dtype).removeprefix('torch.')} {inputs}x{outputs}" + (" +gelu" if self.gelu else "")

    def reference(self, states: torch.Tensor) -> torch.Tensor:
        """The same result through F.linear and F.gelu."""
        out = F.linear(states, self.weight, self.bias)
        return F.gelu(out, approximate=self.gelu) if self.gelu else out


class ModuleLinear(LinearLayer):
    """A layer that is not a plain nn.Linear (a quantized one): the module itself, then GELU (never pre-packed)."""

    def __init__(self, module: nn.Module, gelu: str | None = None):
        self.module, self.gelu = module, gelu

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        out = self.module(states)
        return F.gelu(out, approximate=self.gelu) if self.gelu else out


def fastest_linear(module: nn.Module, gelu: str | None = None) -> PrepackedLinear | ModuleLinear:
    """The fastest checked way to run module (then GELU): pre-packed oneDNN for a plain nn.Linear."""
    if type(module) is nn.Linear:
        return PrepackedLinear(module.weight, module.bias, gelu)
    return ModuleLinear(module, gelu)


def _prepack_weight(layer: PrepackedLinear) -> torch.Tensor | None:
    """The weight in oneDNN's layout, or None when oneDNN is unavailable here or disagrees with F.linear."""
    dtype = layer.weight.dtype
    if dtype not in PREPACK_DTYPES or not torch.backends.mkldnn.is_available():
        return None
    probe = torch.randn(37, layer.weight.shape[1], generator=torch.Generator().manual_seed(0)).to(dtype)
    try:
        with torch.inference_mode():
            prepacked = torch.ops.mkldnn._reorder_linear_weight(layer.weight, PREPACK_ROWS_HINT)
            fused = torch.ops.mkldnn._linear_pointwise(probe, prepacked, layer.bias, layer.attr, [], layer.algorithm)
            expected = layer.reference(probe)
    except (RuntimeError, NotImplementedError, AttributeError) as exc:  # a torch built without oneDNN ops
        log.info("oneDNN linear unavailable (%s): using F.linear", exc)
        return None
    error = (fused.float() - expected.float()).abs().max() / expected.float().abs().max().clamp_min(1e-6)
    if not error <= TOLERANCE[dtype]:
        log.warning("oneDNN linear differs from F.linear by %.2g (relative): using F.linear", float(error))
        return None
    return prepacked
