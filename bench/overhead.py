"""Where one request's time goes in-process: parse, tokenize, forward, pool, encode (float JSON and base64)."""

from __future__ import annotations

import functools
import statistics
import time

import orjson

STAGES = ("parse", "tokenize", "forward", "pool", "encode float", "encode base64")


def _median_ms(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure_overhead(texts: list[str], quantize: str, threads: int, sizes: tuple[int, ...],
                     repeats: int) -> dict[int, dict[str, float]]:
    """Median milliseconds per stage for requests of each size (texts cycled), through the server's own functions."""
    import torch

    from embedding_app.api.encoding import render_embeddings
    from embedding_app.api.parsing import parse_request

    from .ceiling import worker_embedder

    embedder = worker_embedder(quantize, threads)
    results = {}
    for size in sizes:
        inputs = [texts[i % len(texts)] for i in range(size)]
        body = orjson.dumps({"input": inputs, "model": embedder.info.id})
        sequences = embedder.inputs_for(inputs)
        vectors = embedder.embed(sequences)
        width = max(map(len, sequences))
        states = torch.randn(size, width, embedder.info.dimensions)  # the pool's input for one padded batch
        mask = torch.ones(size, width, dtype=torch.int64)
        stages = {
            "parse": functools.partial(parse_request, body),
            "tokenize": functools.partial(embedder.inputs_for, inputs),
            "forward": functools.partial(embedder.embed, sequences),  # forward + pool; pool is subtracted below
            "pool": lambda states=states, mask=mask: torch.nn.functional.normalize(embedder.pool(states, mask), dim=-1),
            "encode float": functools.partial(render_embeddings, vectors, "float", embedder.info.id, 0),
            "encode base64": functools.partial(render_embeddings, vectors, "base64", embedder.info.id, 0),
        }
        slow = size >= 64  # a large request's forward takes seconds: two runs are enough
        timings = {name: _median_ms(step, 2 if name == "forward" and slow else repeats)
                   for name, step in stages.items()}
        timings["forward"] -= timings["pool"]
        results[size] = timings
    return results
