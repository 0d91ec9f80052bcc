"""Faithful int8 Linear: per-channel int8 weights, per-token uint8 activations, outlier input columns in fp32.

y[i] = s[i] * ((q[i] @ wq.T) * w_scale + [x_out[i] / s[i], 1 / s[i], -z[i]] @ [w_out, bias, c].T)
q = per-token asymmetric uint8 of x with the outlier columns zeroed (scale s, zero point z); c = w_scale * row sums
of wq (the zero points' share). The few outlier columns, the bias and the zero-point correction ride in one small
fp32 GEMM (oneDNN for batches, F.linear for a few texts); oneDNN's int8 GEMM (torch.ops.onednn.qlinear_pointwise:
exact int32 sums, per-channel scale fused) adds into its output in place, and one pass applies the per-token scale.
Per-token scales alone fall short of min cosine 0.999 to fp32 on all-MiniLM-L6-v2; the outlier columns reach it
(BENCHMARKS.md, "Faithful int8"). Where the CPU's kernel adds pairs of products in int16 (no VNNI), paired weights
keep 8-bit activations exact (int8_weights.py).
"""

from __future__ import annotations

import functools
import logging

import torch

from .int8_kernels import quantize_kernel
from .int8_weights import EXTRA_SHARE, FULL, PAIRED, binding_columns, quantize_weight
from .prepacked_linear import LinearLayer, PrepackedLinear

log = logging.getLogger(__name__)
# (activation levels, weight scheme), best first: a probe at load finds the first one this CPU's kernel sums exactly
# (not assumed from flags). VNNI sums 8-bit products exactly; without it, x86 kernels add adjacent pairs of u8 x s8
# products in int16 (vpmaddubsw), which paired weights respect; 7-bit activations (2 * 127 * 127 < 2**15) are the
# last resort for a kernel that pairs otherwise (min cosine 0.998 on all-MiniLM-L6-v2: not for QUANTIZE=true).
PRECISIONS = ((255, FULL), (255, PAIRED), (127, FULL))
PROBE_ROWS = 64
# The side GEMM runs oneDNN (pre-packed) from this many rows, F.linear (MKL) below. oneDNN builds a kernel per new row
# count, which one text per request pays at every call; with six layers reusing it per request, oneDNN took 0.96x
# F.linear's time at 512 rows and 0.82x at 2048 on AVX2 code (1.02x at 256, 1.30x at 64), 0.55x and 0.44x with
# AVX-512 (BENCHMARKS.md, "The int8 side GEMM on oneDNN for batches").
SIDE_ONEDNN_ROWS = 512


def quantize_rows(states: torch.Tensor, levels: int, outliers: torch.Tensor | None = None,
                  keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row asymmetric quantization of states to 0..levels outside the outlier columns: values, scales, side."""
    # outliers: column indices; keep: the same as a mask (outlier_mask), made once per layer; side: the side GEMM's
    # inputs [outliers / scale, 1 / scale, -zero point]. states is read, never written.
    rows, columns = states.shape
    outliers = torch.empty(0, dtype=torch.int64) if outliers is None else outliers
    keep = outlier_mask(columns, outliers) if keep is None else keep
    values, scale = torch.empty(states.shape, dtype=torch.uint8), torch.empty(rows)
    side = torch.empty(rows, len(outliers) + 2)
    quantize_kernel()(states.numpy(), keep.numpy(), outliers.numpy(), levels, values.numpy(), scale.numpy(),
                      side.numpy())
    return values, scale, side


def outlier_mask(columns: int, outliers: torch.Tensor) -> torch.Tensor:
    """1.0 for each of columns, 0.0 at the outliers: what the quantization multiplies a row by."""
    return torch.ones(columns).index_fill_(0, outliers, 0.0)


@functools.cache
def _warn_slow() -> None:
    """Say once per process (not once per layer) that int8 runs its slow reference."""
    log.warning("oneDNN int8 GEMM unavailable or not exact on this CPU: int8 runs its slow fp32 reference")


class Int8Linear(LinearLayer):
    """x @ weight.T + bias in int8 with outlier columns kept fp32, then GELU when gelu is its approximation."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, outliers: torch.Tensor,
                 gelu: str | None = None):
        weight = weight.detach().float()
        self.bias = torch.zeros(weight.shape[0]) if bias is None else bias.detach().float()
        self.calibrated, self.gelu = outliers.long(), gelu
        self.w_zero = torch.zeros(weight.shape[0], dtype=torch.int64)
        self.kernel = "int8 arithmetic in fp32 (slow reference)"
        for levels, scheme in PRECISIONS:
            self._quantize_weight(weight, scheme)
            if self._prepack(levels):
                break
        else:
            _warn_slow()
            self.levels = PRECISIONS[0][0]
            self._quantize_weight(weight, PRECISIONS[0][1])
        self.side = PrepackedLinear(self.extra_weight, None)
        self.keep = outlier_mask(weight.shape[1], self.outliers)

    def _quantize_weight(self, weight: torch.Tensor, scheme: str) -> None:
        self.scheme, self.outliers = scheme, self.calibrated
        if scheme == PAIRED:  # the columns where the pair bound binds most join the calibrated ones in fp32
            extra = binding_columns(weight.index_fill(1, self.outliers, 0.0), weight.shape[1] // EXTRA_SHARE)
            self.outliers = torch.cat([self.outliers, torch.tensor(extra, dtype=torch.long)])
        self.wq, self.w_scale = quantize_weight(weight.index_fill(1, self.outliers, 0.0), scheme)
        # The fp32 side GEMM's columns: the outliers, the bias, and the zero points' share (w_scale * row sums of wq).
        correction = self.w_scale * self.wq.sum(dim=1, dtype=torch.float32)
        self.extra_weight = torch.cat([weight[:, self.outliers], self.bias[:, None], correction[:, None]], dim=1)

    @property
    def shape(self) -> str:
        """int8, in x out features, fused GELU: the key of its kernel in the load log and /health."""
        outputs, inputs = self.wq.shape
        return f"int8 {inputs}x{outputs}" + (" +gelu" if self.gelu else "")

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        values, scale, side = quantize_rows(states.detach().contiguous(), self.levels, self.outliers, self.keep)
        out = (self.side if len(side) >= SIDE_ONEDNN_ROWS else self.side.reference)(side)
        if self.prepacked_weight is None:
            out.add_(self.int_gemm(values))
        else:  # oneDNN adds its result into out in place ("sum"): no second output-sized buffer
            torch.ops.onednn.qlinear_pointwise.binary(values, 1.0, 0, self.prepacked_weight, self.w_scale, self.w_zero, out,
                                                      None, 1.0, 0, torch.float32, 1.0, 0, "sum", 1.0, "none", [], "")
        out.mul_(scale[:, None])
        return torch.ops.aten.gelu_(out, approximate=self.gelu) if self.gelu else out

    def int_gemm(self, values: torch.Tensor) -> torch.Tensor:
        """values @ wq.T * w_scale: oneDNN's int8 GEMM (exact int32 sums) when pre-packed, else fp32 arithmetic."""
        if self.prepacked_weight is None:
            return (values.float() @ self.wq.float().T).mul_(self.w_scale)
        return torch.ops.onednn.qlinear_pointwise(values, 1.0, 0, self.prepacked_weight, self.w_scale, self.w_zero, None,
                                                  1.0, 0, torch.float32, "none", [], "")

    def _prepack(self, levels: int) -> bool:
        """Pre-pack the weight for oneDNN's int8 GEMM if it sums exactly here with activations in 0..levels."""
        try:
            prepacked = torch.ops.onednn.qlinear_prepack(self.wq, None)
            if self._exact(prepacked, levels):
                self.prepacked_weight, self.levels = prepacked, levels
                weights = "8-bit weights" if self.scheme == FULL else (
                    f"paired weights, {len(self.outliers) - len(self.calibrated)} more fp32 columns")
                self.kernel = f"oneDNN int8 u8 x s8 ({levels.bit_length()}-bit activations, {weights})"
                return True
        except (RuntimeError, NotImplementedError, AttributeError) as exc:  # a torch without oneDNN's int8 ops
            log.info("oneDNN int8 linear unavailable: %s", exc)
        return False

    def _exact(self, prepacked: torch.Tensor, levels: int) -> bool:
        """Whether oneDNN's sums match exact ones on worst cases (saturating int16 pairs fail) and random inputs."""
        # Row j of the probe drives output j to its largest sum, row PROBE_ROWS + j to its most negative; 64 outputs
        # suffice (a saturating kernel fails on nearly every one) and keep the float64 check cheap at load.
        rows = self.wq[:PROBE_ROWS]
        worst = torch.cat([torch.where(rows > 0, levels, 0), torch.where(rows < 0, levels, 0)]).to(torch.uint8)
        probe = torch.cat([worst, torch.randint(0, levels + 1, (7, self.wq.shape[1]), dtype=torch.uint8,
                                                generator=torch.Generator().manual_seed(0))])
        got = torch.ops.onednn.qlinear_pointwise(probe, 1.0, 0, prepacked, torch.ones_like(self.w_scale), self.w_zero,
                                                 None, 1.0, 0, torch.float32, "none", [], "")[:, :PROBE_ROWS]
        exact = probe.double() @ rows.double().T  # the outputs the worst cases aim at
        return bool(((got.double() - exact).abs() <= exact.abs() * 2.0 ** -23).all())  # fp32 output rounding only
