"""In-process, one thread: packed vs padded batches on the same mixed requests, against the GEMM roofline.

Every rate here is per CPU-second of the one thread (process CPU time): the same as per wall-second on a quiet
machine, and on a shared one it leaves out the time other processes held the core, for the GEMM and the model alike.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from functools import partial
from unittest import mock

VARIANTS = ("packed (BERT path)", "padded, <= 10 % padding (fallback)", "padded to 8192 tokens (18ce209)")
TEXTS_PER_REQUEST = 32


def linear_flop_per_token(config) -> float:
    """FLOP per token in a BERT encoder's Linear layers: Q, K, V, output (h x h) and the FFN (h x i, twice)."""
    h, i = config.hidden_size, config.intermediate_size
    return config.num_hidden_layers * 2 * (4 * h * h + 2 * h * i)


def gemm_gflops(dtype, repeats: int = 10) -> tuple[float, float]:
    """GFLOP/s of 4096x384 by 1536x384 (the FFN's shape): F.linear, and the server's pre-packed oneDNN Linear."""
    import torch

    from embedding_app.inference.prepacked_linear import PrepackedLinear

    x, w, b = torch.randn(4096, 384, dtype=dtype), torch.randn(1536, 384, dtype=dtype), torch.randn(1536, dtype=dtype)
    prepacked = PrepackedLinear(w, b)
    rates = []
    for gemm in (prepacked.reference, prepacked):
        gemm(x)  # oneDNN builds its kernel for the shape on the first call
        started = time.process_time()
        for _ in range(repeats):
            gemm(x)
        rates.append(repeats * 2 * 4096 * 384 * 1536 / (time.process_time() - started) / 1e9)
    return rates[0], rates[1]


@dataclass(frozen=True)
class Roofline:
    """One mode's GEMM rate, the model's FLOP per token and the best real tokens/s of each batching variant."""

    mode: str
    gflops: float  # F.linear: the roofline
    prepacked_gflops: float  # the same GEMM through the server's pre-packed oneDNN Linear (0 when unavailable)
    flop_per_token: float
    real_tokens: int
    rates: dict[str, float]

    @property
    def tokens_per_s(self) -> float:
        """The roofline: real tokens/s if every FLOP of the Linear layers ran at the measured GEMM rate."""
        return self.gflops * 1e9 / self.flop_per_token


def _variants(embedder, requests) -> dict:
    """Per variant, its requests and a function timing them through Embedder.embed, packed or with a padding rule."""
    from embedding_app.inference import batching
    from embedding_app.inference import embedder as embedder_module

    packed = embedder.packed
    old_rule = partial(batching.padded_batches, slack=float("inf"), floor=0)  # the rule before: fill 8192 tokens

    def run(use_packed: bool, rule):
        def timed(batches) -> float:
            embedder.packed = packed if use_packed else None
            with mock.patch.object(embedder_module, "padded_batches", rule):
                started = time.process_time()
                for batch in batches:
                    embedder.embed(batch)
                return time.process_time() - started
        return timed

    # The old rule is 4-5x slower and only a contrast: half the requests give its rate well enough.
    return dict(zip(VARIANTS, ((requests, run(True, batching.padded_batches)),
                               (requests, run(False, batching.padded_batches)),
                               (requests[:max(1, len(requests) // 2)], run(False, old_rule)))))


def measure_roofline(mode: str, requests: int, rounds: int) -> Roofline:
    """On one thread: the GEMM and each variant alternately, best of `rounds`, on `requests` x 32 random texts."""
    import torch

    from embedding_app.config.settings import Settings
    from embedding_app.inference.loader import load_engine
    from embedding_app.inference.model_source import resolve_model
    from harness.workload import load_texts

    torch.set_num_threads(1)
    embedder = load_engine(resolve_model("", None), Settings(), mode)
    texts, rng = load_texts(), random.Random(0)
    batches = [embedder.inputs_for([rng.choice(texts) for _ in range(TEXTS_PER_REQUEST)])
               for _ in range(requests)]
    variants = _variants(embedder, batches)
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    rates, gflops = dict.fromkeys(variants, 0.0), (0.0, 0.0)
    with torch.inference_mode():
        for subset, timed in variants.values():
            timed(subset[:1])  # warm-up: thread pool, oneDNN's first kernels
        for _ in range(rounds):
            gflops = tuple(map(max, gflops, gemm_gflops(dtype)))
            for name, (subset, timed) in variants.items():
                tokens = sum(len(ids) for batch in subset for ids in batch)
                rates[name] = max(rates[name], tokens / timed(subset))
    return Roofline(mode, *gflops, linear_flop_per_token(embedder.model.config),
                    sum(len(ids) for batch in batches for ids in batch), rates)


ROOFLINE_HEADER = ["mode", "GEMM GFLOP/s (F.linear)", "MFLOP/token", "roofline tokens/s",
                   *(f"{v} tokens/s (% of roofline)" for v in VARIANTS), "packed ÷ 18ce209",
                   "pre-packed GEMM GFLOP/s", "packed, % of the pre-packed roofline"]


def roofline_row(result: Roofline) -> list:
    """Tokens/s of each variant with its % of the roofline, packed ÷ the old rule, and the pre-packed GEMM's view."""
    rates = [result.rates[v] for v in VARIANTS]
    prepacked = result.prepacked_gflops * 1e9 / result.flop_per_token
    return [result.mode, f"{result.gflops:.0f}", f"{result.flop_per_token / 1e6:.1f}", f"{result.tokens_per_s:.0f}",
            *(f"{rate:.0f} ({100 * rate / result.tokens_per_s:.0f} %)" for rate in rates),
            f"{rates[0] / rates[-1]:.1f}×", f"{result.prepacked_gflops:.0f}", f"{100 * rates[0] / prepacked:.0f} %"]
