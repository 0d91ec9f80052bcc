"""Tokenize only as much of a long text as the model can keep, so work is bounded by the tokens used."""

from __future__ import annotations

# The first prefix tried holds this many characters per token kept; real text needs ~4-6, so one pass
# nearly always suffices, and each miss doubles it (at most twice the work of the prefix needed).
CHARS_PER_TOKEN = 16
_OPTIONS = {"add_special_tokens": False, "return_attention_mask": False, "return_token_type_ids": False,
            "verbose": False}


def _encode(tokenizer, texts: list[str]):
    return tokenizer(texts, **_OPTIONS)


def _prefix(text: str, limit: int) -> tuple[str, bool]:
    """text cut to about limit characters: before a whitespace in the second half if any (complete=True)."""
    end = max(text.rfind(space, limit // 2, limit + 1) for space in " \n\t\r")
    if end > 0:
        # Trailing whitespace goes too: some tokenizers tie it to the word that follows.
        return text[:end].rstrip(), True
    return text[:limit], False


def _tokenize_long(tokenizer, text: str, room: int, limit: int) -> list[int]:
    """More than room leading tokens of text, identical to its full tokenization's, else all its tokens."""
    while limit < len(text):
        prefix, complete = _prefix(text, limit)
        encoding = _encode(tokenizer, [prefix])
        ids = encoding["input_ids"][0]
        if not complete and ids:  # cut inside a word: its tokens may differ from the whole word's, drop them
            words = encoding.word_ids(0)
            keep = len(ids)
            while keep and words[keep - 1] == words[-1]:
                keep -= 1
            ids = ids[:keep]
        if len(ids) > room:
            return ids
        limit *= 2
    return _encode(tokenizer, [text])["input_ids"][0]


def tokenize(tokenizer, texts: list[str], room: int) -> list[list[int]]:
    """Token ids of each text (no special tokens); a text with more than room tokens may stop early.

    Contract: a text with at most room tokens gets exactly its full tokenization; a longer one gets at
    least room + 1 tokens, whose first room are those of its full tokenization.
    """
    limit = CHARS_PER_TOKEN * (room + 1)
    if not getattr(tokenizer, "is_fast", False):  # word boundaries need a fast (Rust) tokenizer
        limit = max(len(text) for text in texts) if texts else 0
    short = [index for index, text in enumerate(texts) if len(text) <= limit]
    out: list[list[int]] = [[] for _ in texts]
    if short:  # one batched call for everything that is not long
        for index, ids in zip(short, _encode(tokenizer, [texts[i] for i in short])["input_ids"]):
            out[index] = ids
    for index, text in enumerate(texts):
        if len(text) > limit:
            out[index] = _tokenize_long(tokenizer, text, room, limit)
    return out
