"""Every QUANTIZE mode in-process: speed against fp32 (measured side by side) and fidelity to fp32."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from harness.quality import Fidelity, measure_fidelity
from harness.workload import DATA

BATCH = 32


@dataclass(frozen=True)
class ModeResult:
    """One mode's speed on long and short texts relative to fp32, and its fidelity."""

    mode: str
    long_speedup: float
    short_speedup: float
    long_texts_per_s: float
    fidelity: Fidelity


def _seconds(embedder, batches) -> float:
    started = time.perf_counter()
    for batch in batches:
        embedder.embed(batch)
    return time.perf_counter() - started


def measure_modes(modes: tuple[str, ...], threads: int, rounds: int) -> list[ModeResult]:
    """Load each mode, then time all modes round-robin (the best of `rounds`) so noise hits them alike."""
    import torch

    from embedding_app.config.settings import Settings
    from embedding_app.inference.loader import load_engine
    from embedding_app.inference.model_source import resolve_model
    from harness.workload import load_texts

    torch.set_num_threads(threads)
    source = resolve_model("", None)
    embedders = {mode: load_engine(source, Settings(), mode) for mode in ("fp32", *modes)}
    fp32 = embedders["fp32"]
    passages = fp32.inputs_for(load_texts())
    queries = fp32.inputs_for(json.loads((DATA / "queries.json").read_text())["queries"])
    long = sorted((ids for ids in passages if len(ids) >= 128), key=len)
    short = sorted((ids for ids in passages if len(ids) <= 48), key=len)
    workloads = {"long": [long[i:i + BATCH] for i in range(0, len(long), BATCH)],
                 # Short batches take ~1/20 of a long one: repeated so that a timing is not mostly noise.
                "short": [short[i:i + BATCH] for i in range(0, len(short), BATCH)] * 8}
    best = {(mode, kind): float("inf") for mode in embedders for kind in workloads}
    for _ in range(rounds):
        for mode, embedder in embedders.items():
            for kind, batches in workloads.items():
                best[mode, kind] = min(best[mode, kind], _seconds(embedder, batches))
    reference = fp32.embed(passages), fp32.embed(queries)
    return [ModeResult(mode, best["fp32", "long"] / best[mode, "long"], best["fp32", "short"] / best[mode, "short"],
                       len(long) / best[mode, "long"], measure_fidelity(embedders[mode], passages, queries, *reference))
            for mode in embedders]
