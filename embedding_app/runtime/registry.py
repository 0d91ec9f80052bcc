"""The per-process holder of the loaded models: gunicorn's post_fork fills it, the routes read it."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedding_app.config.settings import Settings, get_settings
from embedding_app.inference.model_source import ModelSource, resolve_models
from embedding_app.serving.allocator import limit_worker_caches

from . import metrics
from .thread_budget import available_cores

if TYPE_CHECKING:  # the embedder imports torch, which is only ever imported in a worker
    from embedding_app.inference.embedder import Embedder
    from embedding_app.inference.reranker import Reranker

log = logging.getLogger(__name__)
_lock = threading.Lock()
_registry: Registry | None = None


@dataclass(frozen=True, eq=False)
class ServedModel:
    """One loaded model: where it came from (names, prompts) and the engine that runs it."""

    source: ModelSource
    embedder: Embedder | Reranker  # a Reranker for a cross-encoder (source.task == "rerank")

    @property
    def id(self) -> str:
        """The served name: the id /v1/models lists and responses carry."""
        return self.source.served_name


class Registry:
    """The models this process serves, found by served name or by any of their aliases."""

    def __init__(self, models: list[ServedModel]):
        self.models = models
        self._by_name = {name: model for model in models for name in (model.id, *model.source.aliases)}

    def find(self, name: str | None) -> ServedModel | None:
        """The model a request names (None: the first one), or None when no model answers to that name."""
        return self.models[0] if name is None else self._by_name.get(name)

    def ids(self) -> list[str]:
        """The served names, in MODEL_NAME's order."""
        return [model.id for model in self.models]


def openmp_waits(threads_per_worker: int | None, environ) -> dict[str, str]:
    """The OpenMP wait settings an auto worker adds to its environment before torch loads (none if any is set)."""
    # auto: a worker's threads follow the load, so for a moment (a forward begun before the other worker
    # started) they outnumber the cores. libgomp's waiting threads spin for ~3 ms by default and take the cores
    # from the threads doing the work (0.30-0.45x on busy cores); sleeping at once cost a lone request 11 %; a
    # 10 000-spin wait cost neither (BENCHMARKS.md, "Thread budget"). libgomp (torch's) takes the spin count over
    # the policy; other OpenMP runtimes take the policy. An operator's own value of either wins.
    if threads_per_worker is not None or {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & environ.keys():
        return {}
    return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}


def _start_torch(settings: Settings, threads: int) -> None:
    """Set this process's torch and tokenizer threads."""
    # The Rust tokenizer's thread pool defaults to every core; held to the worker's fixed thread budget (one
    # thread under auto: its pool size is fixed at first use) it cannot steal the cores other workers' torch
    # threads run on. Set before the pool first starts.
    tokenizer_threads = settings.threads_per_worker or 1
    os.environ["RAYON_NUM_THREADS"] = str(tokenizer_threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if tokenizer_threads > 1 else "false"
    os.environ.update(openmp_waits(settings.threads_per_worker, os.environ))
    if not limit_worker_caches():
        log.warning("pid %d: not glibc, malloc thresholds left alone (memory may grow under varied requests)",
                    os.getpid())
    import torch  # only ever imported in a worker: torch state is not fork-safe

    torch.set_num_threads(threads)
    metrics.torch_threads(threads)
    torch.set_grad_enabled(False)
    log.info("pid %d: %d torch thread(s)%s", os.getpid(), threads,
             "" if settings.threads_per_worker else " while alone (auto: the busy workers share the cores)")


def load_worker_models(settings: Settings, sources: list[ModelSource], threads: int = 0) -> Registry:
    """Set this process's torch threads (default: THREADS_PER_WORKER, or all cores), then load every model."""
    global _registry
    started = time.perf_counter()
    _start_torch(settings, threads or settings.threads_per_worker or available_cores())
    from embedding_app.inference.loader import load_engine

    _registry = Registry([ServedModel(source, load_engine(source, settings, settings.quantize)) for source in sources])
    for model in _registry.models:
        measure_speed(model)
    ready = time.perf_counter() - started
    metrics.worker_ready(ready)
    log.info("pid %d: ready %.2fs after fork", os.getpid(), ready)
    return _registry


def measure_speed(model: ServedModel, tokens: int = 2048) -> None:
    """Time a forward of about `tokens` tokens: the speed admission starts from (requests then refine it)."""
    from embedding_app.api.deadline import record_speed

    embedder = model.embedder
    if embedder.info.task != "embed":  # a reranker's requests set its speed (rag_service.rerank)
        return
    text = embedder.inputs_for(["speed " * embedder.info.max_tokens])[0]
    batch = [text] * max(1, -(-tokens // len(text)))  # at least `tokens`: enough to be measured
    embedder.embed(batch)  # the first run of these shapes pays one-off set-up: measure the second
    began = time.perf_counter()
    embedder.embed(batch)
    record_speed(model.id, len(batch) * len(text), time.perf_counter() - began)


def load_worker_model(settings: Settings, source: ModelSource) -> Embedder:
    """Load one model as a worker does (benchmarks) and return its Embedder."""
    return load_worker_models(settings, [source]).models[0].embedder


def get_registry() -> Registry:
    """The loaded models; outside gunicorn (flask run) they are loaded on first use."""
    if _registry is None:
        with _lock:
            if _registry is None:
                settings = get_settings()
                load_worker_models(settings, resolve_models(settings.models, settings.hf_token))
    return _registry


def set_models(models: list[ServedModel] | None) -> None:
    """Install already loaded models, or None to empty the holder (tests)."""
    global _registry
    _registry = Registry(models) if models else None
