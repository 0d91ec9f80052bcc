"""The raw-model ceiling: the same requests, model, mode and thread budget in-process, no HTTP or JSON."""

from __future__ import annotations

import multiprocessing
import time
from typing import Self

from harness.server import rss_mb


def worker_embedder(quantize: str, threads: int | None):
    """The packaged model's Embedder, loaded by the code path a gunicorn worker takes (threads None: auto)."""
    from embedding_app.config.settings import Settings
    from embedding_app.inference.model_source import resolve_model
    from embedding_app.runtime.loading import load_models
    from embedding_app.runtime.thread_budget import for_settings

    settings = Settings(quantize=quantize, threads_per_worker=threads)
    return load_models(settings, [resolve_model("", None)], for_settings(settings)).models[0].embedder


def _worker(share, quantize, threads, commands, results) -> None:
    embedder = worker_embedder(quantize, threads)
    for texts in share:  # warm-up pass: one-off kernel set-up for every batch shape, as the server had
        embedder.embed(embedder.inputs_for(texts))
    results.put(("ready", rss_mb()))
    while commands.get():
        began = time.perf_counter()
        for texts in share:
            embedder.embed(embedder.inputs_for(texts))
        results.put(("rate", sum(map(len, share)) / (time.perf_counter() - began)))


class CeilingProcesses:
    """`workers` fresh processes holding the model like gunicorn's workers, each timed on its share of requests."""

    def __init__(self, workload: list[list[str]], quantize: str, workers: int, threads: int):
        context = multiprocessing.get_context("spawn")  # torch must not be forked from a process that used it
        self.results = context.Queue()
        self.commands = [context.Queue() for _ in range(workers)]
        self.processes = [context.Process(target=_worker, daemon=True,
                                          args=(workload[i::workers], quantize, threads, self.commands[i],
                                                self.results)) for i in range(workers)]

    def __enter__(self) -> Self:
        for process in self.processes:
            process.start()
        self.rss_mb = max(self._collect("ready"))
        return self

    def _collect(self, kind: str) -> list[float]:
        replies = [self.results.get(timeout=1800) for _ in self.processes]
        assert all(k == kind for k, _ in replies), replies
        return [value for _, value in replies]

    def measure(self) -> float:
        """Texts/s of all processes embedding their shares at once (summed: a perfectly balanced server)."""
        for commands in self.commands:
            commands.put(True)
        return sum(self._collect("rate"))

    def __exit__(self, *exc) -> None:
        for commands in self.commands:
            commands.put(False)
        for process in self.processes:
            process.join(60)
