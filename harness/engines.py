"""Models loaded in-process as a worker loads them, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path


def source_of(directory: str | Path):
    """A model directory resolved as the server resolves a MODEL_NAME item (served as the directory's name)."""
    from embedding_app.inference.model_source import resolve_model

    return resolve_model(str(directory), None)


def engine_of(source, mode: str = "fp32", **settings):
    """The Embedder (or Reranker) a worker would load for `source` in `mode`, with Settings(**settings)."""
    from embedding_app.config.settings import Settings
    from embedding_app.inference.loader import load_engine

    return load_engine(source, Settings(**settings), mode)
