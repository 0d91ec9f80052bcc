"""QUANTIZE modes: make a loaded fp32 model faster on this CPU, and pick the fastest faithful one."""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import torch
from torch import nn

# Modes that keep cosine >= 0.999 to fp32 on tests/data (see BENCHMARKS.md); only these may be auto-picked.
FAITHFUL_MODES = ("fp32", "bf16")


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


def has_native_bf16(flags: set[str]) -> bool:
    """True when the CPU computes bf16 in hardware (else bf16 is emulated and slower than fp32)."""
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"}) and platform.machine() in ("x86_64", "aarch64", "arm64")


def choose_mode(requested: str, flags: set[str] | None = None) -> tuple[str, str]:
    """Map a QUANTIZE value to a concrete mode and the reason, resolving true/false."""
    if requested == "false":
        return "fp32", "QUANTIZE=false"
    if requested != "true":
        return requested, f"QUANTIZE={requested}"
    flags = cpu_flags() if flags is None else flags
    if has_native_bf16(flags):
        return "bf16", "QUANTIZE=true -> bf16 (cpu has native bf16)"
    return "fp32", "QUANTIZE=true -> fp32 (cpu has no native bf16; int8 modes are not faithful)"


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


def apply_mode(model: nn.Module, mode: str) -> nn.Module:
    """Return the model converted to a concrete mode (fp32, bf16, int8, int8-ffn-fp32)."""
    if mode == "fp32":
        return model
    if mode == "bf16":
        return model.to(torch.bfloat16)
    if mode == "int8":
        return _dynamic_int8(model)
    if mode == "int8-ffn-fp32":
        return _int8_ffn_fp32(model)
    raise ValueError(f"unknown quantization mode {mode!r}")
