"""Score query-document pairs with a cross-encoder, as sentence-transformers' CrossEncoder.predict does."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .encoder import Encoder, ModelInfo, cut
from .inputs import InputError
from .packed_bert import pack

Pair = tuple[list[int], list[int]]  # a finished pair: token ids and token type ids


@dataclass(frozen=True)
class PairTemplate:
    """Where the tokenizer puts special tokens and token types around a pair, e.g. [CLS] a [SEP] b [SEP]."""

    ids: tuple[list[int], list[int], list[int]]  # before the first text, between the texts, after the second
    types: tuple[list[int], list[int], list[int]]  # their token type ids
    first_type: int
    second_type: int

    @property
    def specials(self) -> int:
        """How many special tokens a pair gets."""
        return sum(map(len, self.ids))

    def build(self, first: list[int], second: list[int]) -> Pair:
        """The finished token ids and token type ids of one pair of bare token sequences."""
        (before, middle, after), (t_before, t_middle, t_after) = self.ids, self.types
        ids = before + first + middle + second + after
        types = t_before + [self.first_type] * len(first) + t_middle + [self.second_type] * len(second) + t_after
        return ids, types


def _find(full: list[int], part: list[int], start: int) -> int:
    return next(i for i in range(start, len(full) - len(part) + 1) if full[i:i + len(part)] == part)


def pair_template(tokenizer) -> PairTemplate:
    """The tokenizer's pair template, read from how it encodes the pair ("a", "b")."""
    encoded = tokenizer("a", "b", return_token_type_ids=True)
    full = encoded["input_ids"]
    types = encoded.get("token_type_ids") or [0] * len(full)
    a, b = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("a", "b"))
    i = _find(full, a, 0)
    j = _find(full, b, i + len(a))
    cuts = ((0, i), (i + len(a), j), (j + len(b), len(full)))
    return PairTemplate(tuple(full[s:e] for s, e in cuts), tuple(types[s:e] for s, e in cuts), types[i], types[j])


def longest_first(first: int, second: int, budget: int) -> tuple[int, int]:
    """How many tokens of each text a pair keeps: the tokenizers' `longest_first` truncation (CrossEncoder's)."""
    if first + second <= budget:
        return first, second
    short = min(first, second)
    # The shorter text is kept whole if it fits in half the budget; else both get half (the longer one the odd token).
    keep_short, keep_long = (short, budget - short) if 2 * short <= budget else (budget // 2, budget - budget // 2)
    return (keep_long, keep_short) if first > second else (keep_short, keep_long)


def activation(config):
    """The function from logits to scores: CrossEncoder's default for this model (sigmoid for one label), or none."""
    path = (getattr(config, "sentence_transformers", None) or {}).get("activation_fn") or getattr(
        config, "sbert_ce_default_activation_function", None)
    if path and path.endswith("Identity"):
        return lambda logits: logits
    if path and not path.endswith("Sigmoid"):
        raise ValueError(f"activation_fn {path!r} is not supported (only Sigmoid or Identity)")
    return torch.sigmoid


def _packable_head(model) -> str | None:
    """Why the packed path cannot run this model's head, or None for a BERT with pooler and linear classifier."""
    bert = getattr(model, "bert", None)
    if bert is None or getattr(bert, "pooler", None) is None or not hasattr(model, "classifier"):
        return f"{type(model).__name__} is not a BERT with a pooler and a classifier"
    return None


class Reranker(Encoder):
    """A loaded cross-encoder with its tokenizer, ready to score batches of query-document pairs."""

    def __init__(self, model, tokenizer, info: ModelInfo, batch_tokens: int):
        reason = _packable_head(model)
        super().__init__(model, tokenizer, info, batch_tokens, body=model if reason else model.bert, fallback=reason)
        self.template = pair_template(tokenizer)
        self.max_text_tokens = info.max_tokens - self.template.specials
        # Token types go to models that take them and tokenizers that make them (not DistilBERT, for one).
        self.with_types = ("token_type_ids" in tokenizer.model_input_names
                           and "token_type_ids" in inspect.signature(model.forward).parameters)
        self.activate = activation(model.config)

    def pairs(self, query: list[int], documents: list[list[int]], truncate: bool, from_start: bool = False,
              limit: int | None = None) -> tuple[list[Pair], int]:
        """The finished pairs of a query with each document (cut to limit tokens, if given: it always cuts), and
        how many were truncated."""
        pairs, truncated = [], 0
        for index, document in enumerate(documents):
            capped = bool(limit) and len(document) > limit
            document = cut(document, limit, from_start) if capped else document
            keep_query, keep_document = longest_first(len(query), len(document), self.max_text_tokens)
            fitted = (keep_query, keep_document) != (len(query), len(document))
            if fitted and not truncate:
                count = len(query) + len(document) + self.template.specials
                raise InputError(index, f"the query and document have at least {count} tokens, more than the limit "
                                        f"of {self.info.max_tokens} per pair (the model's maximum or "
                                        "MAX_TOKENS_PER_INPUT), and truncation is off")
            truncated += capped or fitted
            pairs.append(self.template.build(cut(query, keep_query, from_start),
                                             cut(document, keep_document, from_start)))
        return pairs, truncated

    def _logits_packed(self, pairs: list[Pair]) -> torch.Tensor:
        ids, positions, packing = pack([ids for ids, _ in pairs])
        types = torch.tensor([t for _, types in pairs for t in types], dtype=torch.int64)
        states = self.packed.forward(ids, positions, packing, types)
        pooler = self.model.bert.pooler  # BERT's head: tanh(dense(first token)), then the classifier
        return self.model.classifier(pooler.activation(pooler.dense(states[packing.offsets[:-1]])))

    def _logits_padded(self, pairs: list[Pair]) -> torch.Tensor:
        width = max(len(ids) for ids, _ in pairs)
        ids = torch.full((len(pairs), width), self.pad_id, dtype=torch.int64)
        types = torch.zeros((len(pairs), width), dtype=torch.int64)
        mask = torch.zeros((len(pairs), width), dtype=torch.int64)
        for row, (pair_ids, pair_types) in enumerate(pairs):
            ids[row, :len(pair_ids)] = torch.tensor(pair_ids)
            types[row, :len(pair_ids)] = torch.tensor(pair_types)
            mask[row, :len(pair_ids)] = 1
        extra = {"token_type_ids": types} if self.with_types else {}
        return self.model(input_ids=ids, attention_mask=mask, **extra).logits

    @torch.inference_mode()
    def score(self, pairs: list[Pair], raw: bool = False, before_forward: Callable[[], None] | None = None) -> np.ndarray:
        """Scores (float32, input order) of finished pairs: the model's activation applied unless raw; before_forward
        runs before each forward pass."""
        forward = self._logits_packed if self.packed else self._logits_padded
        out = np.empty(len(pairs), dtype=np.float32)
        for batch in self.batches([ids for ids, _ in pairs], before_forward):
            logits = forward([pairs[i] for i in batch])[:, 0].float()
            out[batch] = (logits if raw else self.activate(logits)).numpy()
        return out
