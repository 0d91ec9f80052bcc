"""Rerank throughput (packed path vs sentence-transformers' CrossEncoder.predict) and compact-type retrieval quality.

    python -m bench.rerank [--rounds 3] [--threads 2] [--queries 8] [--documents 32]

No real cross-encoder installs offline, so the reranker is all-MiniLM-L6-v2's encoder with a random one-label
head (BertForSequenceClassification from the packaged model): the size and speed of cross-encoder/ms-marco-MiniLM-L6-v2,
not its rankings. Both sides score the same pairs (one request per query) in the same process, timed round-robin
(best of --rounds).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from harness.quality import overlap, top_k
from harness.workload import DATA, load_texts

from .report import load_average, machine, table

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length, for both sides


def _build_reranker(directory: Path) -> Path:
    """all-MiniLM-L6-v2's encoder with a seeded random one-label head, saved as a cross-encoder directory."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging

    from embedding_app.inference.model_source import default_model_dir

    logging.set_verbosity_error()  # the random head is intended: no load report about its missing weights
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(default_model_dir(), num_labels=1)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(default_model_dir()).save_pretrained(directory)
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_TOKENS}))
    return directory


def _best_round_robin(functions: dict, rounds: int) -> dict[str, float]:
    """Each function's best time of rounds, run in turn so that load from elsewhere hits them alike."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(rounds):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def _workload(queries: int, documents: int) -> list[tuple[str, list[str]]]:
    """One request per query of tests/data, each with `documents` of its real passages (in turn, wrapping round)."""
    asked = json.loads((DATA / "queries.json").read_text())["queries"][:queries]
    passages = load_texts()
    return [(query, [passages[(i * documents + j) % len(passages)] for j in range(documents)])
            for i, query in enumerate(asked)]


def _score_requests(engine, requests: list[tuple[str, list[str]]]) -> np.ndarray:
    """Scores of every request, as the server computes them per request: tokenize, pair, truncate, score."""
    scores = []
    for query, docs in requests:
        query_ids, *doc_ids = engine.tokenize([query, *docs])
        scores.append(engine.score(engine.pairs(query_ids, doc_ids, True)[0]))
    return np.concatenate(scores)


def measure_rerank(threads: int, rounds: int, queries: int, documents: int) -> tuple[list[list], str]:
    """Rows (path, pairs/s, real tokens/s, ratio, max |score diff|) for the packed path and CrossEncoder.predict."""
    import torch
    from sentence_transformers import CrossEncoder

    from embedding_app.config.settings import Settings
    from embedding_app.inference.loader import load_engine
    from embedding_app.inference.model_source import resolve_model

    torch.set_num_threads(threads)
    requests = _workload(queries, documents)
    with tempfile.TemporaryDirectory() as tmp:
        directory = _build_reranker(Path(tmp))
        source = resolve_model(str(directory), None)
        engines = {f"packed Reranker ({mode})": load_engine(source, Settings(), mode) for mode in ("fp32", "bf16")}
        reference = CrossEncoder(str(directory), device="cpu", max_length=MAX_TOKENS)

    def theirs():
        return np.concatenate([reference.predict([(query, d) for d in docs], batch_size=32) for query, docs in requests])

    paths = {"CrossEncoder.predict (fp32, batch 32)": theirs,
             **{name: partial(_score_requests, engine, requests) for name, engine in engines.items()}}
    expected = theirs()
    diffs = {name: float(np.abs(score() - expected).max()) for name, score in paths.items()}
    engine = engines["packed Reranker (fp32)"]
    tokens = sum(len(ids) for query, docs in requests
                 for ids, _ in engine.pairs(engine.tokenize([query])[0], engine.tokenize(docs), True)[0])
    pairs = sum(len(docs) for _, docs in requests)
    timings = _best_round_robin(paths, rounds)
    base = timings["CrossEncoder.predict (fp32, batch 32)"]
    rows = [[name, pairs / seconds, tokens / seconds, f"{base / seconds:.2f}×", f"{diffs[name]:.2g}"]
            for name, seconds in timings.items()]
    return rows, f"{len(requests)} requests × {documents} documents = {pairs} pairs, {tokens} real tokens"


def measure_compact() -> list[list]:
    """Top-10 overlap with float retrieval for each compact type, all-MiniLM-L6-v2 on the project's texts."""
    from embedding_app.api.compact import to_int8, to_ubinary
    from embedding_app.config.settings import Settings
    from embedding_app.inference.loader import load_engine
    from embedding_app.inference.model_source import resolve_model

    embedder = load_engine(resolve_model("", None), Settings(), "fp32")

    def embed(texts: list[str]) -> np.ndarray:
        return embedder.embed(embedder.inputs_for(texts))

    passages = embed(load_texts())
    queries = embed(json.loads((DATA / "queries.json").read_text())["queries"])
    reference = top_k(queries, passages)
    int8_q, int8_p = to_int8(queries).astype(np.int32), to_int8(passages).astype(np.int32)
    bits_q, bits_p = np.unpackbits(to_ubinary(queries), axis=1), np.unpackbits(to_ubinary(passages), axis=1)
    hamming = (bits_q[:, None, :] != bits_p[None, :, :]).sum(-1)
    uint8_q, uint8_p = int8_q + 128, int8_p + 128  # as stored: L2 distance is unchanged by the offset
    l2 = ((uint8_q[:, None, :] - uint8_p[None, :, :]) ** 2).sum(-1)
    ranked = {"int8 (dot product)": np.argsort(-(int8_q @ int8_p.T), axis=1, kind="stable")[:, :10],
              "uint8 (L2 distance)": np.argsort(l2, axis=1, kind="stable")[:, :10],
              "binary / ubinary (Hamming distance)": np.argsort(hamming, axis=1, kind="stable")[:, :10]}
    sizes = {"int8 (dot product)": 384, "uint8 (L2 distance)": 384, "binary / ubinary (Hamming distance)": 48}
    return [[name, f"{sizes[name]} B", f"{overlap(reference, indices):.3f}"] for name, indices in ranked.items()]


def main(argv: list[str] | None = None) -> None:
    """Print both tables as markdown."""
    parser = argparse.ArgumentParser(prog="python -m bench.rerank", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--documents", type=int, default=32)
    args = parser.parse_args(argv)
    print(f"{machine()}; load {load_average()}; {args.threads} torch thread(s)\n")
    rows, workload = measure_rerank(args.threads, args.rounds, args.queries, args.documents)
    print(f"Rerank, in-process, {workload}:\n")
    print(table(["path", "pairs/s", "real tokens/s", "vs CrossEncoder", "max abs score diff to CrossEncoder"], rows))
    print("\nCompact embedding types, all-MiniLM-L6-v2 on tests/data (float: 1536 B per vector):\n")
    print(table(["type", "bytes per vector", "top-10 overlap with float"], measure_compact()))


if __name__ == "__main__":
    main()
