"""The raw-model ceiling: the same requests, model, mode and thread budget in-process, no HTTP or JSON."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Ceiling:
    """Throughput of `workers` plain processes embedding the workload, and one such process's RSS."""

    texts_per_s: float
    rss_mb: float


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process, in MB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _worker(share, quantize, threads, start, results, passes) -> None:
    from embedding_app.model_source import resolve_model
    from embedding_app.runtime import load_worker_model
    from embedding_app.settings import Settings

    settings = Settings(quantize=quantize, threads_per_worker=threads)
    embedder = load_worker_model(settings, resolve_model("", None))  # the code path a gunicorn worker takes
    start.wait()
    seconds = float("inf")
    for _ in range(passes):  # the best pass: other processes on a shared machine only ever slow one down
        began = time.perf_counter()
        for texts in share:
            embedder.embed(embedder.finish(embedder.tokenize(texts), True))
        seconds = min(seconds, time.perf_counter() - began)
    results.put((sum(map(len, share)) / seconds, rss_mb()))


def measure_ceiling(workload: list[list[str]], quantize: str, workers: int, threads: int, passes: int = 2) -> Ceiling:
    """Split the requests over `workers` fresh processes (like gunicorn's) and time them running together."""
    context = multiprocessing.get_context("spawn")  # torch must not be forked from a process that used it
    start, results = context.Barrier(workers + 1), context.Queue()
    processes = [context.Process(target=_worker, args=(workload[i::workers], quantize, threads, start, results, passes))
                 for i in range(workers)]
    for process in processes:
        process.start()
    start.wait()
    outcomes = [results.get(timeout=1800) for _ in processes]
    for process in processes:
        process.join()
    # Summed per-process rates: the ceiling a perfectly balanced server would reach.
    return Ceiling(sum(rate for rate, _ in outcomes), max(rss for _, rss in outcomes))
