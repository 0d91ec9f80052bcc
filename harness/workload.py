"""A fixed, seeded mix of embedding requests built from the real texts in tests/data/texts.json."""

from __future__ import annotations

import json
import random
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SHORT_TOKENS = 48  # a sentence
LONG_TOKENS = 128  # a paragraph; the model truncates at 256
REQUEST_SIZES = (1, 2, 4, 8, 16, 32)
LONG_SHARE = 0.3


def load_texts() -> list[str]:
    """The repository's fidelity text set."""
    return json.loads((DATA / "texts.json").read_text())["texts"]


def split_by_length(texts: list[str], tokenizer) -> tuple[list[str], list[str]]:
    """Short (<= 48 tokens) and long (>= 128 tokens) texts."""
    lengths = [len(ids) for ids in tokenizer(texts, verbose=False)["input_ids"]]
    return ([t for t, n in zip(texts, lengths) if n <= SHORT_TOKENS],
            [t for t, n in zip(texts, lengths) if n >= LONG_TOKENS])


def make_requests(short: list[str], long: list[str], count: int, seed: int = 0) -> list[list[str]]:
    """count requests of 1-32 texts each, about 30% of the texts long, the same for every run."""
    rng = random.Random(seed)
    return [[rng.choice(long) if rng.random() < LONG_SHARE else rng.choice(short)
             for _ in range(rng.choice(REQUEST_SIZES))] for _ in range(count)]


def fresh_rounds(texts: list[str], rounds: int, requests: int, per_request: int, seed: int = 0) -> list[list[list[str]]]:
    """Each round its own requests of per_request random texts: no batch shape repeats from one round to the next,
    as in a server, where oneDNN's kernels for a new shape are built at first use (int8 pays more for that)."""
    rng = random.Random(seed)
    return [[[rng.choice(texts) for _ in range(per_request)] for _ in range(requests)] for _ in range(rounds)]
