"""What embedding and reranking models share: tokenizing, limits, length-sorted batches and the kernels' choice."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import tokens
from .batching import packed_chunks, padded_batches
from .inputs import InputError
from .kernel_choice import Choice
from .packed_bert import PackedBert, unsupported_reason

# Out-of-vocabulary ids nearly always come from one client; say how to fix it rather than just refuse.
TIKTOKEN_HINT = ("Token ids must be this model's own ids. LangChain's OpenAIEmbeddings sends OpenAI tiktoken ids "
                 "unless created with check_embedding_ctx_length=False: set it, or send text.")


@dataclass(frozen=True)
class ModelInfo:
    """What the API reports about a served model."""

    id: str
    dimensions: int  # 0 for a reranker: it answers scores, not vectors
    max_tokens: int
    vocab_size: int
    pooling: str
    mode: str
    task: str = "embed"  # "embed" or "rerank": what requests the model can answer


def special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single text (e.g. [CLS] ... [SEP])."""
    full = tokenizer("a")["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    return [], []


class Encoder:
    """A loaded transformer and its tokenizer: the common part of Embedder and Reranker."""

    def __init__(self, model, tokenizer, info: ModelInfo, batch_tokens: int, body=None, fallback: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.batch_tokens = batch_tokens
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.prefix, self.suffix = special_affixes(tokenizer)  # around a single text
        self.max_text_tokens = info.max_tokens - len(self.prefix) - len(self.suffix)  # left for text (a pair: less)
        body = model if body is None else body  # the encoder stack (a head model keeps it in e.g. .bert)
        # BERT encoders run padding-free (embedding_app/inference/packed_bert.py); other architectures run padded batches.
        self.fallback = fallback or unsupported_reason(body)
        self.packed = PackedBert(body) if self.fallback is None else None
        self.choice: Choice | None = None  # how the loader chose the mode and kernels (reported by /health)
        # Called with each forward's inputs and padding tokens; a server worker sets it (metrics, thread budget).
        self.on_forward: Callable[[int, int], None] = lambda size, padding: None

    def describe_path(self) -> str:
        """Which forward this model takes, for the load log line."""
        if not self.packed:
            return f"padded batches: {self.fallback}"
        done, total = self.packed.prepacked_count()
        return f"packed batches, {done} of {total} matrix multiplications pre-packed for oneDNN"

    def linears(self) -> list:
        """The matrix multiplications of the packed path, whose kernels the loader may choose (none when padded)."""
        return [part for layer in self.packed.layers for part in layer.linears()] if self.packed else []

    def tokenize(self, texts: list[str], whole: bool = False) -> list[list[int]]:
        """Token ids of each text without special tokens; one longer than max_text_tokens may stop past it unless whole."""
        # Only a prefix of a long text is tokenized: an 8 MB string costs what its first tokens cost. Truncation
        # that drops the start needs the end, so whole texts.
        return tokens.tokenize(self.tokenizer, texts, sys.maxsize if whole else self.max_text_tokens)

    def check_ids(self, sequences: list[list[int]]) -> None:
        """Raise InputError for the first token id outside the model's vocabulary."""
        for index, ids in enumerate(sequences):
            if ids and not 0 <= min(ids) <= max(ids) < self.info.vocab_size:
                bad = next(i for i in ids if not 0 <= i < self.info.vocab_size)
                raise InputError(index, f"token id {bad} is outside the model's vocabulary "
                                        f"(0..{self.info.vocab_size - 1}). {TIKTOKEN_HINT}")

    def batches(self, sequences: list, before_forward: Callable[[], None] | None = None) -> Iterator[list[int]]:
        """Indices of length-sorted forward passes within the token budget (packed or little padded); before_forward
        runs before each one (a request's heartbeat and deadline checks)."""
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)
        lengths = [len(sequences[i]) for i in order]
        chunk: Callable = packed_chunks if self.packed else padded_batches
        for first, end in chunk(lengths, self.batch_tokens):
            padding = 0 if self.packed else (end - first) * lengths[first] - sum(lengths[first:end])
            if before_forward:
                before_forward()
            self.on_forward(end - first, padding)
            yield order[first:end]


def cut(ids: list[int], keep: int, from_start: bool) -> list[int]:
    """The first keep ids, or the last keep ones when from_start (truncation that drops the start)."""
    return list(ids[len(ids) - keep:]) if from_start else list(ids[:keep])
