"""CPU cost of one huge input, full tokenization vs the bounded prefix: python -m bench.long_text."""

from __future__ import annotations

import time

from transformers import AutoTokenizer

from embedding_app.inference import tokens
from embedding_app.inference.model_source import default_model_dir

ROOM = 254  # all-MiniLM-L6-v2: 256 tokens with [CLS] and [SEP]
TEXTS = {"8.3 MB of words": "word " * 1_660_000, "4 MB of CJK": "中文" * 2_000_000}


def cpu_seconds(function) -> float:
    """Process CPU time of one call."""
    started = time.process_time()
    function()
    return time.process_time() - started


def main(rounds: int = 3) -> None:
    """Alternate both ways on each text and print the CPU time ratio."""
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    print("| input | full tokenization (s CPU) | bounded (ms CPU) | ratio |\n|---|---|---|---|")
    for name, text in TEXTS.items():
        full = bounded = 0.0
        for _ in range(rounds):  # alternating, so machine noise hits both alike
            full += cpu_seconds(lambda text=text: tokenizer([text], add_special_tokens=False, verbose=False))
            bounded += cpu_seconds(lambda text=text: tokens.tokenize(tokenizer, [text], ROOM))
        print(f"| {name} | {full / rounds:.2f} | {bounded / rounds * 1000:.2f} | {full / bounded:.0f}x |")


if __name__ == "__main__":
    main()
