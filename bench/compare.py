"""Side by side over HTTP: this server vs an older checkout, and batched vs one-text requests, alternately."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.server import ROOT, GunicornServer
from harness.workload import load_texts, make_requests, split_by_length

from .load import run_load


def best_of(rounds: int, runs: dict) -> dict:
    """Texts/s of each named run, best of `rounds`, the runs alternating within every round."""
    best = {name: 0.0 for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = max(best[name], run().texts_per_s)
    return best


def main() -> None:
    """Start this checkout's server and --base's with default settings; print texts/s ratios measured alternately."""
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="another checkout, e.g. git worktree add /tmp/base 18ce209")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    from transformers import AutoTokenizer

    from embedding_app.model_source import default_model_dir

    short, long = split_by_length(load_texts(), AutoTokenizer.from_pretrained(default_model_dir()))
    workload = make_requests(short, long, options.requests)
    singles = [[text] for request in workload for text in request]
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    c = options.concurrency
    with GunicornServer(results / "gunicorn-new.log", MODEL_NAME="") as new, \
            GunicornServer(results / "gunicorn-base.log", root=options.base, MODEL_NAME="") as base:
        run_load(new.url, workload, c), run_load(base.url, workload, c)  # warm-up
        best = best_of(options.rounds, {"new batched": lambda: run_load(new.url, workload, c),
                                        "base batched": lambda: run_load(base.url, workload, c),
                                        "new one text per request": lambda: run_load(new.url, singles, c)})
    print(f"{len(workload)} requests, {len(singles)} texts, {c} clients, best of {options.rounds} alternating rounds")
    for name, rate in best.items():
        print(f"  {name}: {rate:.1f} texts/s")
    print(f"  new ÷ base (batched): {best['new batched'] / best['base batched']:.2f}x")
    print(f"  batched ÷ one text per request (new): {best['new batched'] / best['new one text per request']:.2f}x")


if __name__ == "__main__":
    main()
