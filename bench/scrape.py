"""What a server's /metrics says about the work it did: inputs, real tokens and padding tokens embedded."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

COUNTERS = {"embedding_inputs_total": "inputs", "embedding_tokens_total": "tokens",
            "embedding_padding_tokens_total": "padding"}


@dataclass(frozen=True)
class Work:
    """Counts summed over every worker and model: inputs, real tokens (padding excluded), padding tokens."""

    inputs: float = 0.0
    tokens: float = 0.0
    padding: float = 0.0

    def __sub__(self, other: Work) -> Work:
        return Work(self.inputs - other.inputs, self.tokens - other.tokens, self.padding - other.padding)

    @property
    def padded_per_real(self) -> float:
        """Tokens the model computed (real + padding) per real token: 1.0 means no padding at all."""
        return (self.tokens + self.padding) / self.tokens

    @property
    def tokens_per_input(self) -> float:
        """Mean real tokens per embedded input."""
        return self.tokens / self.inputs


def parse_work(text: str) -> Work:
    """The counters in a Prometheus text exposition, summed over their labels (0 when a counter is absent)."""
    totals = dict.fromkeys(COUNTERS.values(), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in COUNTERS:
                totals[COUNTERS[sample.name]] += sample.value
    return Work(**totals)


def scrape(url: str) -> Work:
    """The work counters of the server at url, all workers merged."""
    response = requests.get(f"{url}/metrics", timeout=30)
    response.raise_for_status()
    return parse_work(response.text)
