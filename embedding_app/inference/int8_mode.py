"""QUANTIZE=int8: pick each Linear's outlier input columns on text shipped with the server, then run it in int8."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .int8_linear import Int8Linear

CALIBRATION = Path(__file__).with_name("calibration.txt")  # varied prose, code, numbers; not the test texts
# Input columns per Linear kept in fp32 (fidelity by column count: BENCHMARKS.md, "Faithful int8"). They cost: the
# fp32 side GEMM they ride in is compute-bound, its time linear in its columns (on a 72-token text, 41 % of the int8
# GEMMs' time on a VNNI core); 24 kept top-10 overlap at 0.990 on the test texts, 16 gave 0.985.
OUTLIER_COLUMNS = 24


def calibrate(model: nn.Module, tokenizer, columns: int | None = None) -> dict[str, torch.Tensor]:
    """Per Linear (by module name), the input columns with the largest magnitude on the calibration text."""
    columns = OUTLIER_COLUMNS if columns is None else columns
    peaks: dict[str, torch.Tensor] = {}

    def record(name):
        def hook(_module, inputs, _output):
            peak = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0)
            peaks[name] = peak if name not in peaks else torch.maximum(peaks[name], peak)
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in model.named_modules()
             if type(module) is nn.Linear]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # short lines gain nothing from more, and a sibling worker may be loading beside it
    try:
        with torch.inference_mode():
            for line in CALIBRATION.read_text().splitlines():
                model(**tokenizer(line, return_tensors="pt", truncation=True, max_length=256))
    finally:
        torch.set_num_threads(threads)
        for hook in hooks:
            hook.remove()
    return {name: peak.topk(min(columns, peak.numel())).indices.sort().values for name, peak in peaks.items()}


def mark_outliers(model: nn.Module, tokenizer, columns: int | None = None,
                  known: dict[str, list[int]] | None = None) -> nn.Module:
    """Attach each Linear's outlier columns as `int8_outliers`, and all of them as the model's `int8_outlier_columns`."""
    # Known columns (a cached choice's) are used where they fit the model; else they are calibrated here.
    columns = OUTLIER_COLUMNS if columns is None else columns
    outliers = _fitting(model, known, columns) or calibrate(model, tokenizer, columns)
    for name, module in model.named_modules():
        if name in outliers:
            module.int8_outliers = outliers[name]
    model.int8_outlier_columns = {name: indices.tolist() for name, indices in outliers.items()}
    return model


def _fitting(model: nn.Module, known: dict[str, list[int]] | None, columns: int) -> dict[str, torch.Tensor] | None:
    """known as tensors if it fits the model exactly, else None."""
    # Fits: every Linear named, each with `columns` (or all its) sorted, distinct, in-range integer columns.
    # Read from a cache file: anything else (another model's, a damaged entry) costs a calibration, not a crash.
    linears = {name: module.in_features for name, module in model.named_modules() if type(module) is nn.Linear}
    if not isinstance(known, dict) or set(known) != set(linears):
        return None
    fitted = {}
    for name, indices in known.items():
        if not (isinstance(indices, list) and len(indices) == min(columns, linears[name])
                and all(type(index) is int for index in indices) and indices == sorted(set(indices))
                and all(0 <= index < linears[name] for index in indices)):
            return None
        fitted[name] = torch.tensor(indices, dtype=torch.long)
    return fitted


class QuantizedLinear(nn.Module):
    """An nn.Linear replaced by Int8Linear, for models that run transformers' own (padded) forward."""

    def __init__(self, module: nn.Linear):
        super().__init__()
        self.layer = Int8Linear(module.weight, module.bias, module.int8_outliers)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """The layer on any leading shape."""
        return self.layer(states.reshape(-1, states.shape[-1])).reshape(*states.shape[:-1], -1)


def replace_linears(model: nn.Module) -> nn.Module:
    """Swap every marked nn.Linear for a QuantizedLinear (the padded path has no packed layers to build)."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Linear and hasattr(child, "int8_outliers"):
                setattr(parent, name, QuantizedLinear(child))
    return model
