"""A worker's start-up: set its torch threads, load every model in the mode QUANTIZE asks for, measure its speed;
and the loaded models for the routes."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from embedding_app.config.settings import Settings, get_settings
from embedding_app.inference.model_source import ModelSource, resolve_models

from . import metrics
from .allocator import limit_worker_caches
from .registry import Registry, ServedModel, install, installed
from .speed import record_speed
from .thread_budget import ThreadBudget, for_settings

log = logging.getLogger(__name__)
_lock = threading.Lock()


def start_torch(budget: ThreadBudget) -> None:
    """Set this process's torch and tokenizer threads (the environment before torch loads, if the master has not)."""
    os.environ.update(budget.environment(os.environ))
    if not limit_worker_caches():
        log.warning("pid %d: not glibc, malloc thresholds left alone (memory may grow under varied requests)",
                    os.getpid())
    import torch  # imported (never run) in the master: OpenMP state that torch ops start does not survive fork

    threads = budget.share()
    torch.set_num_threads(threads)
    metrics.torch_threads(threads)
    torch.set_grad_enabled(False)
    log.info("pid %d: %d torch thread(s)%s", os.getpid(), threads, budget.summary)


def load_models(settings: Settings, sources: list[ModelSource], budget: ThreadBudget) -> Registry:
    """Set this process's threads, load every model in the QUANTIZE mode and serve them from the registry."""
    started = time.perf_counter()
    start_torch(budget)
    import torch

    from embedding_app.inference.loader import load_engine

    models = []
    # Loaded at the threads this worker runs while every worker is busy. Workers start together: under the AVX2 cap
    # two workers building int8 on two threads each were ready 4.2-4.4 s after fork, on one each 2.1-2.3 s. And the
    # probe decides throughput there: on a 2-core emulated AVX2 CPU int8 and fp32 were within 4 % at a lone worker's
    # two threads, int8 1.37x fp32 at one (BENCHMARKS.md).
    torch.set_num_threads(budget.busy_share())
    try:
        for source in sources:
            # QUANTIZE's value itself (true: the fastest faithful mode measured here; a mode: that one).
            engine = load_engine(source, settings, settings.quantize)
            choice = engine.choice
            metrics.record_choice(source.served_name, choice.mode, choice.kernels, choice.tokens_per_second)
            engine.on_forward = _on_forward(budget)
            models.append(ServedModel(source, engine))
    finally:
        torch.set_num_threads(budget.share())
    registry = install(models)
    for model in registry.models:
        measure_speed(model)
    ready = time.perf_counter() - started
    metrics.worker_ready(ready)
    log.info("pid %d: ready %.2fs after fork", os.getpid(), ready)
    return registry


def _on_forward(budget: ThreadBudget) -> Callable[[int, int], None]:
    def on_forward(size: int, padding: int) -> None:
        metrics.record_batch(size, padding)
        budget.follow_load()  # auto: workers that started or finished since the last forward change the share
    return on_forward


def measure_speed(model: ServedModel, tokens: int = 2048) -> None:
    """Time a forward of about `tokens` tokens: the speed admission starts from (requests then refine it)."""
    embedder = model.embedder
    if embedder.info.task != "embed":  # a reranker's requests set its speed (rag_service.rerank)
        return
    text = embedder.inputs_for(["speed " * embedder.info.max_tokens])[0]
    batch = [text] * max(1, -(-tokens // len(text)))  # at least `tokens`: enough to be measured
    embedder.embed(batch)  # the first run of these shapes pays one-off set-up: measure the second
    began = time.perf_counter()
    embedder.embed(batch)
    record_speed(model.id, len(batch) * len(text), time.perf_counter() - began)


def get_registry() -> Registry:
    """The loaded models; outside gunicorn (flask run) they are loaded on first use."""
    if installed() is None:
        with _lock:  # a threaded flask run: one thread loads, the others wait for it
            if installed() is None:
                settings = get_settings()
                load_models(settings, resolve_models(settings.models, settings.hf_token), for_settings(settings))
    return installed()
