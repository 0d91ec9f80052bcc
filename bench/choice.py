"""Is the load-time choice right on this CPU? QUANTIZE=true's pick against every faithful mode x kernel, side by side.

    python -m bench.choice [--threads 1] [--rounds 3] [--requests 12]

Each variant is the default model loaded in one faithful mode with every matrix multiplication forced onto one
kernel (pre-packed oneDNN with its GELU fused or apart, or F.linear); all run the same requests of 32 mixed real
texts, alternating, best of rounds, new requests every round, in a process set up as a server worker (huge pages,
small oneDNN caches). The chosen configuration should be within a few per cent of the fastest.
"""

from __future__ import annotations

import argparse
import time

from .report import as_a_worker, load_average, machine, table

TEXTS_PER_REQUEST = 32


def _variants(source, modes: tuple[str, ...]) -> dict[str, object]:
    """Every faithful mode with all-oneDNN (GELU fused, then apart) and all-F.linear matrix multiplications where it
    has that choice (int8 layers run their own kernel: one variant)."""
    from embedding_app.config.settings import Settings
    from embedding_app.inference.kernel_choice import use_kernels
    from embedding_app.inference.loader import EngineBuilder, read_model
    from embedding_app.inference.prepacked_linear import (
        F_LINEAR,
        GELU_APART,
        ONEDNN,
        PrepackedLinear,
    )

    settings = Settings()
    build = EngineBuilder(source, settings, *read_model(source, settings), copies=True)
    variants = {}
    for mode in modes:
        for kernel in (ONEDNN, GELU_APART, F_LINEAR):
            embedder = build(mode)  # every layer that oneDNN can pre-pack here is pre-packed: nothing chosen yet
            layers = [layer for layer in embedder.linears() if isinstance(layer, PrepackedLinear)]
            if not layers:
                variants[mode] = embedder
                break
            if kernel != F_LINEAR and any(not layer.prepacked for layer in layers):
                continue  # oneDNN cannot pre-pack this mode on this CPU
            # GELU apart where a layer has a GELU, fused oneDNN elsewhere
            use_kernels(layers, {layer.shape: kernel if kernel in layer.candidates() else ONEDNN for layer in layers})
            variants[f"{mode}, {kernel}"] = embedder
    return variants


def run(threads: int, rounds: int, requests: int) -> str:
    """Markdown: the chosen mode and kernels, then every variant's real tokens/s against the fastest."""
    import torch

    from embedding_app.config.choices import FAITHFUL_MODES
    from embedding_app.config.settings import Settings
    from embedding_app.inference.loader import load_engine
    from embedding_app.inference.model_source import resolve_model
    from harness.workload import fresh_rounds, load_texts

    torch.set_num_threads(threads)
    source = resolve_model("", None)
    chosen = load_engine(source, Settings(kernel_cache_dir=""), "true")
    rounds_of = [[chosen.inputs_for(request) for request in requests]
                 for requests in fresh_rounds(load_texts(), rounds, requests, TEXTS_PER_REQUEST)]
    variants = {"chosen (QUANTIZE=true)": chosen, **_variants(source, FAITHFUL_MODES)}
    best = dict.fromkeys(variants, float("inf"))  # seconds per real token
    for batches in rounds_of:  # new requests every round: no batch shape repeats (as in a server)
        tokens = sum(len(ids) for batch in batches for ids in batch)
        for name, embedder in variants.items():
            started = time.perf_counter()
            for batch in batches:
                embedder.embed(batch)
            best[name] = min(best[name], (time.perf_counter() - started) / tokens)
    fastest = min(best.values())
    rows = [[name, round(1 / seconds), f"{fastest / seconds:.3f}"] for name, seconds in best.items()]
    kernels = ", ".join(f"{shape}: {kernel}" for shape, kernel in chosen.choice.kernels.items())
    return (f"{machine()}; load {load_average()}; {threads} thread(s), {requests} requests x {TEXTS_PER_REQUEST} "
            f"texts, new ones every round ({tokens} real tokens in the last), best of {rounds}\n\n"
            f"chosen: {chosen.info.mode} ({kernels})\n\n"
            + table(["variant", "real tokens/s", "of the fastest"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=12)
    args = parser.parse_args()
    as_a_worker()  # memory as in a server worker: small oneDNN caches, so one variant cannot warm up the next
    print(run(args.threads, args.rounds, args.requests))


if __name__ == "__main__":
    main()
