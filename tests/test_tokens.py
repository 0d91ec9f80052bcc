"""Bounded tokenization: a long text's leading tokens equal its full tokenization's, for a bounded amount of work."""

from __future__ import annotations

import time

import pytest
from transformers import AutoTokenizer

from embedding_app.inference import tokens

ADVERSARIAL = {
    "one-giant-word": "a" * 9000,
    "no-whitespace-cjk": "中文字符" * 2000,
    "long-words": ("x" * 101 + " " + "y" * 150 + " ") * 60,
    "emoji-and-zwj": "😀👩‍👩‍👧 family ❤️ " * 600,
    "combining-marks": "e\u0301te\u0301 cafe\u0301 " * 900,
    "whitespace-runs": "word    \n\t  other\r\n\r\n   " * 400,
    "unicode-spaces": "mot\u00a0mot\u3000語\u2003word " * 700,
    "punctuation-only-separators": "alpha.beta,gamma;delta!" * 800,
    "urls": "https://example.com/a/b?c=d&e=f#g " * 500,
    "digits": "3.14159265358979 " * 900,
    "mixed-scripts": "Привет мир Γειά σου κόσμε مرحبا بالعالم שלום עולם " * 300,
    "control-characters": "tab\tnull\x00bell\x07 " * 900,
}


class CountingTokenizer:
    """The real tokenizer, recording how many characters it was handed."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.is_fast = tokenizer.is_fast
        self.characters = 0

    def __call__(self, texts, **options):
        self.characters += sum(len(text) for text in texts)
        return self.tokenizer(texts, **options)


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return AutoTokenizer.from_pretrained(minilm_dir)


def full(tokenizer, text: str) -> list[int]:
    return tokenizer([text], add_special_tokens=False, verbose=False)["input_ids"][0]


def assert_contract(tokenizer, text: str, room: int) -> None:
    expected = full(tokenizer, text)
    got = tokens.tokenize(tokenizer, [text], room)[0]
    if len(expected) <= room:
        assert got == expected
    else:
        assert len(got) > room and got[:room] == expected[:room]


@pytest.mark.parametrize("room", [3, 14, 100, 254])
def test_real_texts_keep_their_leading_tokens(tokenizer, texts, room):
    for text in texts:
        assert_contract(tokenizer, text, room)


@pytest.mark.parametrize("room", [3, 14, 254])
@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_texts_keep_their_leading_tokens(tokenizer, text, room):
    assert_contract(tokenizer, text, room)
    # Every cut point, not just the first: the same text shifted by a few characters.
    for shift in (1, 2, 3, 5, 8, 13):
        assert_contract(tokenizer, text[shift:], room)


def test_batches_mix_short_and_long_texts_in_input_order(tokenizer, texts):
    batch = [texts[0], "word " * 5000, "", "short", ADVERSARIAL["no-whitespace-cjk"]]
    got = tokens.tokenize(tokenizer, batch, 254)
    for text, ids in zip(batch, got):
        expected = full(tokenizer, text)
        assert ids[:254] == expected[:254] and (len(expected) > 254 or ids == expected)


@pytest.mark.parametrize("text", ["word " * 1_700_000, "中文" * 2_000_000, "a." * 2_000_000],
                         ids=["8mb-words", "4mb-cjk", "4mb-punctuation"])
def test_a_huge_text_is_read_only_as_far_as_needed(tokenizer, text):
    counting = CountingTokenizer(tokenizer)
    ids = tokens.tokenize(counting, [text], 254)[0]
    assert len(ids) > 254
    assert counting.characters <= 4 * tokens.CHARS_PER_TOKEN * 255  # a few KB out of megabytes


def test_embedder_tokenizes_a_huge_text_only_as_far_as_it_keeps(tiny_embedder, monkeypatch):
    counting = CountingTokenizer(tiny_embedder.tokenizer)
    monkeypatch.setattr(tiny_embedder, "tokenizer", counting)
    ids = tiny_embedder.tokenize(["word " * 1_700_000, "short text"])
    assert len(ids[0]) > tiny_embedder.max_text_tokens and ids[1] == full(counting.tokenizer, "short text")
    assert counting.characters < 10_000


MB = 8_000_000
# Shapes that are not prose, 8 MB each, with the tokens the full tokenization gives (for BERT's WordPiece a
# whitespace run is one space, and a word of over 100 characters is one [UNK], however long).
COSTLY = {
    "spaces-between-words": ("hello" + " " * MB + "world", "hello world"),
    "sentence-then-newlines": ("The food was delicious." + "\n" * MB, "The food was delicious."),
    "mixed-whitespace-run": ("a" + " \t\r\n" * (MB // 4) + "b", "a b"),
    "thai-without-spaces": ("สวัสดีครับ" * (MB // 30), "สวัสดีครับ" * 300),
    "one-giant-word": ("a" * MB, "a" * 3000),
}


@pytest.mark.parametrize("text, same_as", COSTLY.values(), ids=COSTLY.keys())
def test_costly_shapes_are_read_only_as_far_as_the_model_keeps(tokenizer, text, same_as):
    counting = CountingTokenizer(tokenizer)
    started = time.perf_counter()
    ids = tokens.tokenize(counting, [text], 254)[0]
    seconds = time.perf_counter() - started
    assert ids == full(tokenizer, same_as)
    assert counting.characters <= 2 * tokens.MAX_CHARS_PER_TOKEN * 255  # at most a few hundred KB of 8 MB
    assert seconds < 1.5  # a safety bound, not a speed claim: the whole text took 2-29 s


def test_whitespace_runs_collapse_only_for_tokenizers_that_ignore_them(tokenizer):
    assert tokens._ignores_whitespace_runs(tokenizer)

    class KeepsRuns(CountingTokenizer):
        """A tokenizer for which every character counts, whitespace included."""

        def __call__(self, texts, **options):
            encoding = self.tokenizer(texts, **options)
            encoding["input_ids"] = [[ord(c) for c in text] for text in texts]
            return encoding

    assert not tokens._ignores_whitespace_runs(KeepsRuns(tokenizer))


@pytest.mark.parametrize("room", [3, 254])
def test_text_that_is_not_prose_is_read_to_a_bounded_prefix(tokenizer, room):
    text = "a" + "\x0b" * 100_000 + "b"  # control characters, which BERT drops: not whitespace, never a cut point
    counting = CountingTokenizer(tokenizer)
    ids = tokens.tokenize(counting, [text], room)[0]
    assert ids == full(tokenizer, text[:tokens.MAX_CHARS_PER_TOKEN * (room + 1)])
    assert counting.characters <= 2 * tokens.MAX_CHARS_PER_TOKEN * (room + 1)
