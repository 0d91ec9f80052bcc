"""The per-process holder of the loaded model: gunicorn's post_fork fills it, the routes read it."""

from __future__ import annotations

import logging
import os
import threading
import time

from . import metrics
from .model_source import ModelSource, resolve_model
from .settings import Settings, get_settings

log = logging.getLogger(__name__)
_lock = threading.Lock()
_embedder = None


def load_worker_model(settings: Settings, source: ModelSource):
    """Set this process's torch threads, then load and quantize the model into the holder."""
    global _embedder
    import torch  # only ever imported in a worker: torch state is not fork-safe

    from .embedder import Embedder
    from .quantize import choose_mode

    torch.set_num_threads(settings.threads_per_worker)
    torch.set_grad_enabled(False)
    mode, reason = choose_mode(settings.quantize)
    log.info("pid %d: %s, %d torch thread(s)", os.getpid(), reason, settings.threads_per_worker)
    started = time.perf_counter()
    _embedder = Embedder.load(source, settings, mode)
    metrics.worker_ready(time.perf_counter() - started)
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
