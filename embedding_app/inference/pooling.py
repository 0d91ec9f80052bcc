"""Pooling of token states into one vector per input: mean, max, bos (first token), eos (last real token).

POOLERS take padded states [batch, length, hidden] and the attention mask; PACKED_POOLERS take packed states
[tokens, hidden] (inputs end to end) and each input's length.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from embedding_app.config.choices import POOL_TYPES


def pool_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the real (unpadded) token states."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def pool_max(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over the real token states."""
    return states.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).max(1).values


def pool_bos(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token's state (CLS for BERT-like models)."""
    return states[:, 0]


def pool_eos(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last real token's state; batches are right-padded."""
    last = mask.sum(1).long() - 1
    return states[torch.arange(states.shape[0]), last]


# Keyed by modes.POOL_TYPES, in its order: the one list of names settings validates POOL_TYPE against.
POOLERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = dict(
    zip(POOL_TYPES, (pool_mean, pool_max, pool_bos, pool_eos), strict=True))


def packed_mean(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Average of each input's token states."""
    return torch.segment_reduce(states, "mean", lengths=lengths)


def packed_max(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over each input's token states."""
    return torch.segment_reduce(states, "max", lengths=lengths)


def packed_bos(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each input's first token state."""
    return states[torch.cumsum(lengths, 0) - lengths]


def packed_eos(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each input's last token state."""
    return states[torch.cumsum(lengths, 0) - 1]


PACKED_POOLERS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = dict(
    zip(POOL_TYPES, (packed_mean, packed_max, packed_bos, packed_eos), strict=True))
