"""In-process, one thread: packed vs padded batches on the same mixed requests, against the GEMM roofline."""

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


def gemm_gflops(dtype, repeats: int = 10) -> float:
    """One timing of F.linear 4096x384 by 1536x384 (the FFN's shape), in GFLOP/s."""
    import torch
    from torch.nn import functional as F

    x, w, b = torch.randn(4096, 384, dtype=dtype), torch.randn(1536, 384, dtype=dtype), torch.randn(1536, dtype=dtype)
    F.linear(x, w, b)  # oneDNN builds its kernel for the shape on the first call
    started = time.perf_counter()
    for _ in range(repeats):
        F.linear(x, w, b)
    return repeats * 2 * 4096 * 384 * 1536 / (time.perf_counter() - started) / 1e9


@dataclass(frozen=True)
class Roofline:
    """One mode's GEMM rate, the model's FLOP per token and the best real tokens/s of each batching variant."""

    mode: str
    gflops: float
    flop_per_token: float
    real_tokens: int
    rates: dict[str, float]

    @property
    def tokens_per_s(self) -> float:
        """The roofline: real tokens/s if every FLOP of the Linear layers ran at the measured GEMM rate."""
        return self.gflops * 1e9 / self.flop_per_token


def _variants(embedder, requests) -> dict:
    """Per variant, its requests and a function timing them through Embedder.embed, packed or with a padding rule."""
    from embedding_app import batching
    from embedding_app import embedder as embedder_module

    packed = embedder.packed
    old_rule = partial(batching.padded_batches, slack=float("inf"), floor=0)  # the rule before: fill 8192 tokens

    def run(use_packed: bool, rule):
        def timed(batches) -> float:
            embedder.packed = packed if use_packed else None
            with mock.patch.object(embedder_module, "padded_batches", rule):
                started = time.perf_counter()
                for batch in batches:
                    embedder.embed(batch)
                return time.perf_counter() - started
        return timed

    # The old rule is 4-5x slower and only a contrast: half the requests give its rate well enough.
    return dict(zip(VARIANTS, ((requests, run(True, batching.padded_batches)),
                               (requests, run(False, batching.padded_batches)),
                               (requests[:max(1, len(requests) // 2)], run(False, old_rule)))))


def measure_roofline(mode: str, requests: int, rounds: int) -> Roofline:
    """On one thread: the GEMM and each variant alternately, best of `rounds`, on `requests` x 32 random texts."""
    import torch

    from embedding_app.embedder import Embedder
    from embedding_app.model_source import resolve_model
    from embedding_app.settings import Settings
    from harness.workload import load_texts

    torch.set_num_threads(1)
    embedder = Embedder.load(resolve_model("", None), Settings(), mode)
    texts, rng = load_texts(), random.Random(0)
    batches = [embedder.finish(embedder.tokenize([rng.choice(texts) for _ in range(TEXTS_PER_REQUEST)]), True)
               for _ in range(requests)]
    variants = _variants(embedder, batches)
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    rates, gflops = dict.fromkeys(variants, 0.0), 0.0
    with torch.inference_mode():
        for subset, timed in variants.values():
            timed(subset[:1])  # warm-up: thread pool, oneDNN's first kernels
        for _ in range(rounds):
            gflops = max(gflops, gemm_gflops(dtype))
            for name, (subset, timed) in variants.items():
                tokens = sum(len(ids) for batch in subset for ids in batch)
                rates[name] = max(rates[name], tokens / timed(subset))
    return Roofline(mode, gflops, linear_flop_per_token(embedder.model.config),
                    sum(len(ids) for batch in batches for ids in batch), rates)


def attention_padded_per_real(requests: list[list[int]], budget: int = 8192) -> float:
    """Attention rows the packed path computes per real token: each request's length-descending inputs in
    chunks of `budget` real tokens, then in groups of nearly equal lengths that share one padded SDPA call."""
    from embedding_app.batching import packed_chunks, padded_batches
    from embedding_app.packed import ATTENTION_FLOOR, ATTENTION_SLACK

    padded = real = 0
    for lengths in requests:
        lengths = sorted(lengths, reverse=True)
        for first, end in packed_chunks(lengths, budget):
            chunk = lengths[first:end]
            groups = padded_batches(chunk, budget=1 << 62, slack=ATTENTION_SLACK, floor=ATTENTION_FLOOR)
            padded += sum((stop - start) * chunk[start] for start, stop in groups)
            real += sum(chunk)
    return padded / real


ROOFLINE_HEADER = ["mode", "GEMM GFLOP/s", "MFLOP/token", "roofline tokens/s", *(f"{v} tokens/s" for v in VARIANTS),
                   "packed ÷ 18ce209"]


def roofline_row(result: Roofline) -> list:
    """Tokens/s of each variant with its % of the roofline, and packed ÷ the old rule."""
    rates = [result.rates[v] for v in VARIANTS]
    return [result.mode, f"{result.gflops:.0f}", f"{result.flop_per_token / 1e6:.1f}", f"{result.tokens_per_s:.0f}",
            *(f"{rate:.0f} ({100 * rate / result.tokens_per_s:.0f} %)" for rate in rates),
            f"{rates[0] / rates[-1]:.1f}×"]
