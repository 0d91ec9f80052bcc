"""Turn texts or token ids into embeddings: tokenize, truncate, length-sorted token-budget batches, forward, pool."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from . import metrics, thread_budget, tokens
from .batching import packed_chunks, padded_batches
from .inputs import InputError
from .model_source import ModelSource
from .packed import PackedBert, pack, supported
from .pooling import PACKED_POOLERS, POOLERS
from .quantize import apply_mode
from .settings import Settings

log = logging.getLogger(__name__)
# Out-of-vocabulary ids nearly always come from one client; say how to fix it rather than just refuse.
TIKTOKEN_HINT = ("Token ids must be this model's own ids. LangChain's OpenAIEmbeddings sends OpenAI tiktoken ids "
                 "unless created with check_embedding_ctx_length=False: set it, or send text.")


@dataclass(frozen=True)
class ModelInfo:
    """What the API reports about the served model."""

    id: str
    created: int
    dimensions: int
    max_tokens: int
    vocab_size: int
    pooling: str
    mode: str


def _special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single text (e.g. [CLS] ... [SEP])."""
    full = tokenizer("a")["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    return [], []


def _max_tokens(source: ModelSource, tokenizer, config, cap: int = 0) -> int:
    """The input length: sentence-transformers' max_seq_length, else the tokenizer's, capped by positions and cap."""
    limit = source.max_seq_length or tokenizer.model_max_length
    positions = getattr(config, "max_position_embeddings", None)
    if positions and (not limit or limit > positions):
        limit = positions
    limit = int(limit or 512)
    return min(limit, cap) if cap else limit


class Embedder:
    """A loaded model with its tokenizer, ready to embed batches of inputs."""

    def __init__(self, model, tokenizer, info: ModelInfo, normalize: bool, batch_tokens: int):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.normalize = normalize
        self.batch_tokens = batch_tokens
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.prefix, self.suffix = _special_affixes(tokenizer)
        self.room = info.max_tokens - len(self.prefix) - len(self.suffix)
        self.pool = POOLERS[info.pooling]
        self.pool_packed = PACKED_POOLERS[info.pooling]
        # BERT encoders run padding-free (embedding_app/packed.py); other architectures run padded batches.
        self.fallback = supported(model)
        self.packed = PackedBert(model) if self.fallback is None else None

    @classmethod
    def load(cls, source: ModelSource, settings: Settings, mode: str = "fp32") -> Embedder:
        """Load model and tokenizer from a resolved directory and convert the model to mode."""
        started = time.perf_counter()
        options = {"token": settings.hf_token, "trust_remote_code": settings.trust_remote_code}
        tokenizer = AutoTokenizer.from_pretrained(source.path, **options)
        model = AutoModel.from_pretrained(source.path, dtype=torch.float32, **options).eval()
        model = apply_mode(model, mode, tokenizer)
        info = ModelInfo(
            id=source.served_name,
            created=source.created,
            dimensions=int(model.config.hidden_size),
            max_tokens=_max_tokens(source, tokenizer, model.config, settings.max_tokens_per_input),
            vocab_size=int(model.get_input_embeddings().num_embeddings),
            pooling=settings.pool_type or source.pooling or "mean",
            mode=mode,
        )
        embedder = cls(model, tokenizer, info, settings.normalize, settings.batch_tokens)
        if embedder.room < 1:
            raise ValueError(f"MAX_TOKENS_PER_INPUT={settings.max_tokens_per_input} leaves no room for text: the model "
                             f"adds {info.max_tokens - embedder.room} special tokens to every input")
        embedder.embed([embedder.tokenize(["warm up"])[0]])  # first forward pays one-off kernel set-up
        log.info("loaded %s from %s in %.1fs (%s, pooling=%s, max_tokens=%d, %s)", info.id, source.path,
                 time.perf_counter() - started, mode, info.pooling, info.max_tokens,
                 embedder.describe_path())
        return embedder

    def describe_path(self) -> str:
        """Which forward this model takes, for the load log line."""
        if not self.packed:
            return f"padded batches: {self.fallback}"
        done, total = self.packed.prepacked()
        return f"packed batches, {done} of {total} matrix multiplications pre-packed for oneDNN"

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text without special tokens; one longer than the model takes may stop past room."""
        # Only a prefix of a long text is tokenized: an 8 MB string costs what its first tokens cost.
        return tokens.tokenize(self.tokenizer, texts, self.room)

    def check_ids(self, sequences: list[list[int]]) -> None:
        """Raise InputError for the first token id outside the model's vocabulary."""
        for index, ids in enumerate(sequences):
            if ids and not 0 <= min(ids) <= max(ids) < self.info.vocab_size:
                bad = next(i for i in ids if not 0 <= i < self.info.vocab_size)
                raise InputError(index, f"token id {bad} is outside the model's vocabulary "
                                        f"(0..{self.info.vocab_size - 1}). {TIKTOKEN_HINT}")

    def finish(self, sequences: list[list[int]], truncate: bool) -> list[list[int]]:
        """Add the model's special tokens, truncating (or rejecting) inputs longer than the model takes."""
        return self.finish_counted(sequences, truncate)[0]

    def finish_counted(self, sequences: list[list[int]], truncate: bool) -> tuple[list[list[int]], int]:
        """finish, plus how many inputs were truncated (the API reports it: truncation is otherwise silent)."""
        finished = []
        truncated = 0
        for index, ids in enumerate(sequences):
            if len(ids) > self.room:
                if not truncate:
                    # "at least": tokenize() stops counting a long text soon after the limit.
                    count = len(ids) + len(self.prefix) + len(self.suffix)
                    raise InputError(index, f"input has at least {count} tokens, more than the limit of "
                                            f"{self.info.max_tokens} per input "
                                            "(the model's maximum or MAX_TOKENS_PER_INPUT), and TRUNCATE=false")
                ids = ids[:self.room]
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
    def embed(self, sequences: list[list[int]]) -> np.ndarray:
        """Embeddings (float32, one row per sequence, input order) of finished token sequences."""
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)
        lengths = [len(sequences[i]) for i in order]
        if self.packed:
            ranges, forward = packed_chunks(lengths, self.batch_tokens), self._forward_packed
        else:
            ranges, forward = padded_batches(lengths, self.batch_tokens), self._forward_padded
        out = np.empty((len(sequences), self.info.dimensions), dtype=np.float32)
        for first, end in ranges:
            batch = order[first:end]
            padding = 0 if self.packed else (end - first) * lengths[first] - sum(lengths[first:end])
            metrics.record_batch(len(batch), padding)
            thread_budget.follow_load()  # auto: workers that started or finished since the last forward change it
            vectors = forward([sequences[i] for i in batch])
            if self.normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            out[batch] = vectors.numpy()
        return out
