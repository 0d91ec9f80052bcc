"""Fidelity of an embedder against fp32 vectors: cosine, batch invariance, top-k retrieval overlap."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fidelity:
    """How close one mode's vectors are to fp32's on the same texts."""

    min_cosine: float
    mean_cosine: float
    batch_invariance: float  # min cosine of a text embedded alone vs inside one padded batch of all texts
    top10_overlap: float  # mean share of each query's top-10 passages that fp32 also ranks top-10


def top_k(queries: np.ndarray, passages: np.ndarray, k: int = 10) -> np.ndarray:
    """Indices of each query's k nearest passages (unit vectors, so by dot product)."""
    return np.argsort(-(queries @ passages.T), axis=1)[:, :k]


def overlap(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean share of each row of candidate's indices that also appear in reference's row."""
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(reference, candidate)]))


def measure_fidelity(embedder, passages: list[list[int]], queries: list[list[int]],
                     reference: np.ndarray, reference_queries: np.ndarray, alone_every: int = 3) -> Fidelity:
    """Compare embedder's vectors for finished token sequences with fp32 reference vectors."""
    batch = embedder.embed(passages)
    cosines = np.sum(batch * reference, axis=1)
    # Every alone_every-th passage one at a time: a sample of short and long texts keeps tests quick.
    alone = np.concatenate([embedder.embed([ids]) for ids in passages[::alone_every]])
    ranked = top_k(embedder.embed(queries), batch)
    return Fidelity(
        min_cosine=float(cosines.min()),
        mean_cosine=float(cosines.mean()),
        batch_invariance=float(np.sum(alone * batch[::alone_every], axis=1).min()),
        top10_overlap=overlap(top_k(reference_queries, reference), ranked),
    )
