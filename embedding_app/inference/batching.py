"""Split length-sorted inputs into forward passes: a token budget per pass, and little or no padding."""

from __future__ import annotations

# Padded path: at most 10 % padded tokens per batch (BENCHMARKS.md, "Padding-free batches: how they work": tighter
# groups of short texts lose more to per-call overhead than they save), plus a few tokens so that nearly equal short texts share a batch.
PADDED_SLACK = 1.10
PADDED_FLOOR = 64
# Bounds a padded batch's attention and pooling tensors; the packed path has no such cost per input.
MAX_BATCH_SIZE = 128


def packed_chunks(lengths: list[int], budget: int) -> list[tuple[int, int]]:
    """Ranges [first, end) of consecutive inputs with at most `budget` real tokens each (one input may exceed it)."""
    chunks, first, total = [], 0, 0
    for index, length in enumerate(lengths):
        if index > first and total + length > budget:
            chunks.append((first, index))
            first, total = index, 0
        total += length
    return chunks + [(first, len(lengths))] if lengths else chunks


def padded_batches(lengths: list[int], budget: int, slack: float = PADDED_SLACK,
                   floor: int = PADDED_FLOOR) -> list[tuple[int, int]]:
    """Ranges of length-descending inputs whose padded size fits the budget and stays within slack x real + floor."""
    batches, first, real = [], 0, 0
    for index, length in enumerate(lengths):
        padded = (index - first + 1) * lengths[first]  # the first input of a range is its longest
        if index > first and (padded > budget or padded > slack * (real + length) + floor
                              or index - first == MAX_BATCH_SIZE):
            batches.append((first, index))
            first, real = index, 0
        real += length
    return batches + [(first, len(lengths))] if lengths else batches
