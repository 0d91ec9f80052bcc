"""In-process, one thread: packed vs padded batches on the same mixed requests, against the GEMM roofline."""

from __future__ import annotations

import argparse
import json
import random
import time
from functools import partial
from unittest import mock

LINEAR_FLOP_PER_TOKEN = 21.23e6  # all-MiniLM-L6-v2: 6 layers x 2 x (4 x 384^2 + 2 x 384 x 1536)


def gemm_gflops(dtype, repeats: int = 10) -> float:
    """One timing of F.linear 4096x384 by 1536x384 (the FFN's shape), in GFLOP/s."""
    import torch
    from torch.nn import functional as F

    x, w, b = torch.randn(4096, 384, dtype=dtype), torch.randn(1536, 384, dtype=dtype), torch.randn(1536, dtype=dtype)
    started = time.perf_counter()
    for _ in range(repeats):
        F.linear(x, w, b)
    return repeats * 2 * 4096 * 384 * 1536 / (time.perf_counter() - started) / 1e9


def main() -> None:
    """Time each batching variant and the GEMM alternately (best of --rounds) and print tokens/s and % of roofline."""
    parser = argparse.ArgumentParser(prog="python -m bench.packing", description=__doc__)
    parser.add_argument("--mode", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    import torch

    from embedding_app import batching
    from embedding_app import embedder as embedder_module
    from embedding_app.embedder import Embedder
    from embedding_app.model_source import resolve_model
    from embedding_app.settings import Settings
    from harness.workload import load_texts

    torch.set_num_threads(1)
    embedder = Embedder.load(resolve_model("", None), Settings(), options.mode)
    texts, rng = load_texts(), random.Random(0)
    requests = [embedder.finish(embedder.tokenize([rng.choice(texts) for _ in range(32)]), True) for _ in range(12)]
    real = sum(len(ids) for request in requests for ids in request)
    packed = embedder.packed
    old_rule = partial(batching.padded_batches, slack=float("inf"), floor=0)  # the rule before: fill 8192 tokens

    def run(use_packed: bool, rule):
        def timed() -> float:
            embedder.packed = packed if use_packed else None
            with mock.patch.object(embedder_module, "padded_batches", rule):
                started = time.perf_counter()
                for request in requests:
                    embedder.embed(request)
                return time.perf_counter() - started
        return timed

    variants = {"packed (BERT path)": run(True, batching.padded_batches),
                "padded, <= 10 % padding (fallback)": run(False, batching.padded_batches),
                "padded to 8192 tokens (18ce209)": run(False, old_rule)}
    dtype = torch.bfloat16 if options.mode == "bf16" else torch.float32
    best, gflops = {name: float("inf") for name in variants}, 0.0
    with torch.inference_mode():
        for timed in variants.values():
            timed()  # warm-up
        for _ in range(options.rounds):
            gflops = max(gflops, gemm_gflops(dtype))
            for name, timed in variants.items():
                best[name] = min(best[name], timed())
    roofline = gflops * 1e9 / LINEAR_FLOP_PER_TOKEN
    print(f"{options.mode}: GEMM {gflops:.0f} GFLOP/s -> roofline {roofline:.0f} tokens/s per core; "
          f"12 requests x 32 texts, {real} real tokens")
    print(json.dumps({name: {"tokens/s": round(real / s), "% roofline": round(100 * real / s / roofline),
                             "texts/s": round(384 / s, 1)} for name, s in best.items()}, indent=1))


if __name__ == "__main__":
    main()
