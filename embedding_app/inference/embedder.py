"""Turn texts or token ids into embeddings: tokenize, truncate, length-sorted token-budget batches, forward, pool."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .encoder import Encoder, ModelInfo, cut
from .inputs import InputError
from .packed_bert import pack
from .pooling import PACKED_POOLERS, POOLERS


class Embedder(Encoder):
    """A loaded model with its tokenizer, ready to embed batches of inputs."""

    def __init__(self, model, tokenizer, info: ModelInfo, normalize: bool, batch_tokens: int):
        super().__init__(model, tokenizer, info, batch_tokens)
        self.normalize = normalize
        self.pool = POOLERS[info.pooling]
        self.pool_packed = PACKED_POOLERS[info.pooling]

    def inputs_for(self, texts: list[str]) -> list[list[int]]:
        """The model's input for each text: tokenized, cut to fit, between the model's special tokens."""
        return self.add_special_tokens(self.tokenize(texts), truncate=True)[0]

    def add_special_tokens(self, sequences: list[list[int]], truncate: bool, from_start: bool = False,
                           limit: int | None = None) -> tuple[list[list[int]], int]:
        """Sequences between the model's special tokens, cut (or rejected, unless truncate) where longer than the
        model takes, and how many were cut (the API reports it: truncation is otherwise silent)."""
        finished = []
        truncated = 0
        most = self.max_text_tokens
        for index, ids in enumerate(sequences):
            if limit and len(ids) > limit:  # the request's own cap always cuts, whatever its truncation says
                ids = cut(ids, limit, from_start)
                truncated += 1
            if len(ids) > most:
                if not truncate:
                    # "at least": tokenize() stops counting a long text soon after the limit.
                    count = len(ids) + len(self.prefix) + len(self.suffix)
                    raise InputError(index, f"input has at least {count} tokens, more than the limit of "
                                            f"{self.info.max_tokens} per input "
                                            "(the model's maximum or MAX_TOKENS_PER_INPUT), and truncation is off")
                ids = cut(ids, most, from_start)
                truncated += 1
            finished.append(self.prefix + list(ids) + self.suffix)
        return finished, truncated

    def _pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in sequences)
        ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, seq in enumerate(sequences):
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def _forward_padded(self, sequences: list[list[int]]) -> torch.Tensor:
        """Pooled fp32 vectors of one padded batch (length-descending sequences)."""
        ids, mask = self._pad(sequences)
        states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.pool(states.float(), mask)  # pool in fp32 whatever the model's dtype

    def _forward_packed(self, sequences: list[list[int]]) -> torch.Tensor:
        """Pooled fp32 vectors of length-descending sequences run end to end, without padding."""
        ids, positions, packing = pack(sequences)
        return self.pool_packed(self.packed.forward(ids, positions, packing).float(), packing.lengths)

    @torch.inference_mode()
    def embed(self, sequences: list[list[int]], normalize: bool | None = None,
              before_forward: Callable[[], None] | None = None) -> np.ndarray:
        """Embeddings (float32, one row per sequence, input order) of finished token sequences; before_forward runs
        before each forward pass (a request's heartbeat and deadline checks)."""
        forward = self._forward_packed if self.packed else self._forward_padded
        normalize = self.normalize if normalize is None else normalize
        out = np.empty((len(sequences), self.info.dimensions), dtype=np.float32)
        for batch in self.batches(sequences, before_forward):
            vectors = forward([sequences[i] for i in batch])
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            out[batch] = vectors.numpy()
        return out
