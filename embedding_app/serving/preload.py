"""Import the workers' heavy libraries once in the master, before forking: each worker then starts seconds sooner.

Only imports and numba's compiler warm-up run here, never a torch operation: OpenMP's thread pool, which the first
parallel torch op starts, does not survive fork (a worker running torch on more than one thread would hang). Our
own packages stay out, so that a rolling reload (SIGHUP) still brings new server code into new workers; a new
torch or transformers needs a restart (or USR2), as before.
"""

from __future__ import annotations

import importlib
import json
import os
import time

from embedding_app.config.settings import Settings
from embedding_app.inference.model_source import ModelSource
from embedding_app.runtime.allocator import limit_onednn_caches
from embedding_app.runtime.thread_budget import ThreadBudget

# QUANTIZE values whose workers may run the int8 layer, whose quantization loop numba compiles.
INT8_VALUES = ("true", "int8")


def preload(settings: Settings, sources: list[ModelSource], budget: ThreadBudget, log) -> None:
    """Import torch, transformers and each model's architecture (and warm numba where int8 may run); log the time."""
    started = time.perf_counter()
    # libgomp reads its settings once, when torch loads it: here, for every worker (they share one budget).
    os.environ.update(budget.environment(os.environ))
    limit_onednn_caches()
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401

        for source in sources:
            _import_architecture(source, settings.trust_remote_code)
        if settings.quantize in INT8_VALUES:
            _warm_numba()
    except Exception as exc:  # noqa: BLE001 - a worker imports for itself and reports the real error
        log.warning("preloading libraries in the master failed (%s: %s); each worker imports them itself",
                    type(exc).__name__, exc)
        return
    log.info("libraries imported once for every worker in %.1fs", time.perf_counter() - started)


def _import_architecture(source: ModelSource, trust_remote_code: bool) -> None:
    """Import the transformers module that defines the model's class (not a model's own code: the worker runs that)."""
    from transformers.models.auto import configuration_auto, modeling_auto

    config = json.loads((source.path / "config.json").read_text())
    model_type = config.get("model_type")
    if (config.get("auto_map") and trust_remote_code) or model_type not in configuration_auto.CONFIG_MAPPING:
        return
    config_class = configuration_auto.CONFIG_MAPPING[model_type]  # a lazy mapping: get() would not load it
    mapping = (modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING if source.task == "rerank"
               else modeling_auto.MODEL_MAPPING)
    if config_class in mapping:
        importlib.import_module(mapping[config_class].__module__)


def _warm_numba() -> None:
    """Compile a trivial function: numba's first compile builds its type registry (~0.3 s a worker would pay)."""
    import numba

    numba.njit("void(float32[::1])", nogil=True)(_touch)


def _touch(values):  # pragma: no cover - runs compiled
    """Add one to each value (the warm-up's body; any will do)."""
    for i in range(values.shape[0]):
        values[i] += 1
