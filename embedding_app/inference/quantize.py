"""QUANTIZE modes: which modes a QUANTIZE value may run, and how to convert a loaded fp32 model to one."""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import torch
from torch import nn

from embedding_app.config.choices import FAITHFUL_MODES

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX512-BF16 / AMX, Arm BF16


def cpu_flags() -> set[str]:
    """The feature flags of this CPU as the kernel reports them (empty when unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16_flag(flags: set[str]) -> str | None:
    """The CPU flag that shows hardware bf16 math, or None (then bf16 is emulated and can be slower than fp32)."""
    if platform.machine() not in ("x86_64", "AMD64", "aarch64", "arm64"):
        return None
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in flags), None)


def candidates(requested: str) -> tuple[tuple[str, ...], str | None]:
    """The modes to load and time for a QUANTIZE value, and the one it forces (None: the fastest faithful one)."""
    if requested in ("false", "fp32"):
        return ("fp32",), "fp32"
    if requested == "true":  # bf16 only where native, int8 only where it runs at full precision
        available = {"fp32": True, "bf16": bf16_native(), "int8": int8_available()}
        return tuple(mode for mode in FAITHFUL_MODES if available[mode]), None
    # A concrete mode is timed beside fp32, so the log can say what it gains or costs on this CPU.
    return (requested, "fp32"), requested


def bf16_native() -> bool:
    """Whether this CPU has bf16 arithmetic and oneDNN's kernels use it (emulated bf16 ran 4-10x slower than fp32)."""
    return native_bf16_flag(cpu_flags()) is not None and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def int8_available() -> bool:
    """Whether QUANTIZE=int8 runs fast and faithful here: oneDNN's int8 GEMM, exact with 8-bit activations."""
    from .int8_linear import PRECISIONS, Int8Linear

    # With VNNI at 8-bit weights, without it at paired weights; a kernel exact only at 7-bit activations drops to
    # min cosine ~0.998: not for QUANTIZE=true.
    layer = Int8Linear(torch.randn(64, 64), None, torch.tensor([0]))
    return layer.prepacked and layer.levels == PRECISIONS[0][0]


def build_int8(model: nn.Module, tokenizer, outliers: dict[str, list[int]] | None = None) -> nn.Module:
    """The loaded fp32 model prepared for QUANTIZE=int8 (outlier columns marked; int8 layers if padded)."""
    from .int8_mode import mark_outliers, replace_linears
    from .packed_bert import unsupported_reason

    if tokenizer is None:
        raise ValueError("QUANTIZE=int8 needs the model's tokenizer: it calibrates on embedding_app/inference/calibration.txt")
    model = mark_outliers(model, tokenizer, known=outliers)
    return model if unsupported_reason(model) is None else replace_linears(model)


def _dynamic_int8(model: nn.Module, keep_fp32: tuple[str, ...] = ()) -> nn.Module:
    names = {name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and not name.endswith(keep_fp32)}
    spec = {name: torch.ao.quantization.default_dynamic_qconfig for name in names}
    with warnings.catch_warnings():  # quantize_dynamic is deprecated in torch 2.13 but still the fastest int8 path
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def _int8_ffn_fp32(model: nn.Module) -> nn.Module:
    ffn_outputs = tuple(name for name, _ in model.named_modules()
                        if name.endswith("output.dense") and "attention" not in name)
    return _dynamic_int8(model, keep_fp32=ffn_outputs)


def apply_mode(model: nn.Module, mode: str, tokenizer=None, outliers: dict[str, list[int]] | None = None) -> nn.Module:
    """Return the model converted to a concrete mode (fp32, bf16, int8, int8-dynamic, int8-dynamic-ffn-fp32)."""
    # int8 reuses outlier columns found before (Choice.outliers) where they fit the model.
    if mode == "fp32":
        return model
    if mode == "bf16":
        return model.to(torch.bfloat16)
    if mode == "int8":
        return build_int8(model, tokenizer, outliers)
    if mode == "int8-dynamic":
        return _dynamic_int8(model)
    if mode == "int8-dynamic-ffn-fp32":
        return _int8_ffn_fp32(model)
    raise ValueError(f"unknown quantization mode {mode!r}")
