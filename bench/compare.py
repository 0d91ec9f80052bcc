"""Side by side over HTTP: batched vs one-text requests of the same texts, and this server vs an older checkout."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from harness.server import GunicornServer

from .load import run_load

BATCHED, SINGLE, BASE = "this checkout, batched requests", "this checkout, one text per request", "base, batched requests"


def best_of(rounds: int, runs: dict) -> dict:
    """Texts/s of each named run, best of `rounds`, the runs alternating within every round."""
    best = {name: 0.0 for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = max(best[name], run().texts_per_s)
    return best


def compare_over_http(workload: list[list[str]], base: Path | None, concurrency: int, rounds: int,
                      results: Path) -> dict[str, float]:
    """Texts/s of this checkout's server (default settings) on the workload batched and one text per request,
    and of base's server (when given) on it batched; both servers run side by side, the runs alternate."""
    singles = [[text] for request in workload for text in request]
    with ExitStack() as stack:
        new = stack.enter_context(GunicornServer(results / "gunicorn-compare-new.log", MODEL_NAME=""))
        runs = {BATCHED: lambda: run_load(new.url, workload, concurrency),
                SINGLE: lambda: run_load(new.url, singles, concurrency)}
        if base is not None:
            old = stack.enter_context(GunicornServer(results / "gunicorn-compare-base.log", root=base, MODEL_NAME=""))
            runs[BASE] = lambda: run_load(old.url, workload, concurrency)
        for run in runs.values():
            run()  # warm-up: every batch shape once
        return best_of(rounds, runs)


def ratio_lines(best: dict[str, float], base_label: str) -> list[str]:
    """The ratios the issue asks for: batched ÷ one text per request, and this checkout ÷ base."""
    lines = [f"Batched ÷ one text per request (same texts): **{best[BATCHED] / best[SINGLE]:.2f}×**"]
    if BASE in best:
        lines.append(f"This checkout ÷ {base_label} (batched): **{best[BATCHED] / best[BASE]:.2f}×**")
    return lines
