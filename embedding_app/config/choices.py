"""Names shared by settings and the torch modules: pooling types and QUANTIZE modes (no torch, no Flask)."""

from __future__ import annotations

POOL_TYPES = ("mean", "max", "bos", "eos")
# Modes that keep cosine >= 0.999 to fp32 on tests/data (tests/test_quantization.py); only these may be auto-picked.
FAITHFUL_MODES = ("fp32", "bf16", "int8")
# torch's dynamic int8 (per-tensor activations): fast but measurably different vectors, batch-dependent
# (BENCHMARKS.md, "Quantization modes"): opt-in only.
UNFAITHFUL_MODES = ("int8-dynamic", "int8-dynamic-ffn-fp32")
# true = the fastest faithful mode for this CPU, false = fp32, or one concrete mode.
QUANTIZE_MODES = ("true", "false", *FAITHFUL_MODES, *UNFAITHFUL_MODES)
