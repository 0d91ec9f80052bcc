"""Tokenize only as much of a long text as the model can keep, so work is bounded by the tokens used."""

from __future__ import annotations

import re
from functools import lru_cache

# The first prefix tried holds this many characters per token kept; real text needs ~4-6, so one pass
# nearly always suffices, and each miss doubles it (at most twice the work of the prefix needed).
CHARS_PER_TOKEN = 16
# Text that still has too few tokens at this many characters per token kept is not prose (a megabyte "word",
# a script the tokenizer reads as one unknown word, control characters): its tokens so far stand for it all.
MAX_CHARS_PER_TOKEN = 256
_OPTIONS = {"add_special_tokens": False, "return_attention_mask": False, "return_token_type_ids": False,
            "verbose": False}
_WHITESPACE_RUN = re.compile(r"[ \t\n\r]{2,}")
# Texts that tokenize alike when whitespace runs count as one space (they do for BERT's WordPiece).
_RUNS_PROBE = ["a b c. d", "  a \t\n\r  b  c.\n\n d  "]


def _encode(tokenizer, texts: list[str]):
    return tokenizer(texts, **_OPTIONS)


@lru_cache(maxsize=16)
def _ignores_whitespace_runs(tokenizer) -> bool:
    """Whether a run of spaces, tabs and newlines tokenizes as one space does, tried on a probe text."""
    # Then a long run can shrink to one space at no cost in exactness; byte-level BPE and SentencePiece keep
    # whitespace as tokens, and fail the probe.
    plain, runs = _encode(tokenizer, _RUNS_PROBE)["input_ids"]
    return plain == runs


def _prefix(text: str, limit: int) -> tuple[str, bool]:
    """text cut to about limit characters: before a whitespace in the second half if any (complete=True)."""
    end = max(text.rfind(space, limit // 2, limit + 1) for space in " \n\t\r")
    if end > 0:
        # Trailing whitespace goes too: some tokenizers tie it to the word that follows.
        return text[:end].rstrip(), True
    return text[:limit], False


def _tokenize_long(tokenizer, text: str, needed: int, limit: int) -> list[int]:
    """More than needed leading tokens of text, identical to its full tokenization's, else all its tokens.

    Past MAX_CHARS_PER_TOKEN characters per token kept, the tokens of that prefix instead (a word cut there
    keeps the tokens of its part).
    """
    if _ignores_whitespace_runs(tokenizer):  # megabytes of spaces between two words become one
        text = _WHITESPACE_RUN.sub(" ", text)
    cap = MAX_CHARS_PER_TOKEN * (needed + 1)
    while limit < len(text):
        prefix, complete = _prefix(text, min(limit, cap))
        encoding = _encode(tokenizer, [prefix])
        ids = encoding["input_ids"][0]
        if limit >= cap:
            return ids
        if not complete and ids:  # cut inside a word: its tokens may differ from the whole word's, drop them
            words = encoding.word_ids(0)
            keep = len(ids)
            while keep and words[keep - 1] == words[-1]:
                keep -= 1
            ids = ids[:keep]
        if len(ids) > needed:
            return ids
        limit *= 2
    return _encode(tokenizer, [text])["input_ids"][0]


def tokenize(tokenizer, texts: list[str], needed: int) -> list[list[int]]:
    """Token ids of each text (no special tokens); a text with more than needed tokens may stop early.

    Contract: a text with at most needed tokens gets exactly its full tokenization; a longer one gets at
    least needed + 1 tokens, whose first needed are those of its full tokenization. Text that is not prose (fewer
    than one token per MAX_CHARS_PER_TOKEN characters once whitespace runs count as one space) is read as far
    as its first MAX_CHARS_PER_TOKEN * (needed + 1) characters.
    """
    limit = CHARS_PER_TOKEN * (needed + 1)
    if not getattr(tokenizer, "is_fast", False):  # word boundaries need a fast (Rust) tokenizer
        limit = max(len(text) for text in texts) if texts else 0
    short = [index for index, text in enumerate(texts) if len(text) <= limit]
    out: list[list[int]] = [[] for _ in texts]
    if short:  # one batched call for everything that is not long
        for index, ids in zip(short, _encode(tokenizer, [texts[i] for i in short])["input_ids"]):
            out[index] = ids
    for index, text in enumerate(texts):
        if len(text) > limit:
            out[index] = _tokenize_long(tokenizer, text, needed, limit)
    return out
