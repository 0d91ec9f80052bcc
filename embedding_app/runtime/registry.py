"""The per-process holder of the loaded models: runtime/loading.py fills it and hands it to the routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedding_app.inference.model_source import ModelSource

if TYPE_CHECKING:  # the embedder imports torch, which is only ever imported in a worker
    from embedding_app.inference.embedder import Embedder
    from embedding_app.inference.reranker import Reranker

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


def install(models: list[ServedModel] | None) -> Registry | None:
    """Serve these loaded models from now on (None or []: empty the holder, to be loaded on first use)."""
    global _registry
    _registry = Registry(models) if models else None
    return _registry


def installed() -> Registry | None:
    """The models installed in this process, or None before any."""
    return _registry
