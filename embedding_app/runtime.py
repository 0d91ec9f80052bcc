"""The per-process holder of the loaded model: gunicorn's post_fork fills it, the routes read it."""

from __future__ import annotations

import logging
import os
import threading
import time

from . import metrics
from .allocator import limit_worker_caches
from .model_source import ModelSource, resolve_model
from .settings import Settings, get_settings

log = logging.getLogger(__name__)
_lock = threading.Lock()
_embedder = None


def load_worker_model(settings: Settings, source: ModelSource):
    """Set this process's torch threads, then load and quantize the model into the holder."""
    global _embedder
    started = time.perf_counter()
    # The Rust tokenizer's thread pool defaults to every core; held to the worker's thread budget it
    # cannot steal the cores other workers' torch threads run on. Set before the pool first starts.
    os.environ["RAYON_NUM_THREADS"] = str(settings.threads_per_worker)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if settings.threads_per_worker > 1 else "false"
    if not limit_worker_caches():
        log.warning("pid %d: not glibc, malloc thresholds left alone (memory may grow under varied requests)",
                    os.getpid())
    import torch  # only ever imported in a worker: torch state is not fork-safe

    from .embedder import Embedder
    from .quantize import choose_mode

    torch.set_num_threads(settings.threads_per_worker)
    torch.set_grad_enabled(False)
    mode, reason = choose_mode(settings.quantize)
    log.info("pid %d: %s, %d torch thread(s)", os.getpid(), reason, settings.threads_per_worker)
    _embedder = Embedder.load(source, settings, mode)
    ready = time.perf_counter() - started
    metrics.worker_ready(ready)
    log.info("pid %d: ready %.2fs after fork", os.getpid(), ready)
    return _embedder


def get_embedder():
    """The loaded Embedder; outside gunicorn (flask run, tests) it is loaded on first use."""
    if _embedder is None:
        with _lock:
            if _embedder is None:
                settings = get_settings()
                load_worker_model(settings, resolve_model(settings.model_name, settings.hf_token,
                                                          settings.served_model_name))
    return _embedder


def set_embedder(embedder) -> None:
    """Install an already loaded Embedder (tests, benchmarks)."""
    global _embedder
    _embedder = embedder
