"""Client threads that load a server until stopped, and the soak load of randomly shaped requests."""

from __future__ import annotations

import random
import threading

import requests

from .workload import load_texts


class ClientThreads:
    """Client threads that run `self._client(seed)` until the with-block ends (`self.running` turns False)."""

    def __init__(self, clients: int, seed: int = 0):
        self.running = True
        self.threads = [threading.Thread(target=self._client, args=(seed + i,), daemon=True) for i in range(clients)]

    def _client(self, seed: int) -> None:
        raise NotImplementedError

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.running = False
        for thread in self.threads:
            thread.join(150)


def random_request(rng: random.Random, words: list[str]) -> list[str]:
    """1-64 texts of 1-300 words each (some past the model's 256 tokens): a new batch shape almost every time."""
    texts = []
    for _ in range(rng.randint(1, 64)):
        start, length = rng.randrange(len(words)), rng.choice((rng.randint(1, 30), rng.randint(30, 300)))
        texts.append(" ".join(words[start:start + length]) or "empty")
    return texts


class Soak(ClientThreads):
    """`clients` threads posting random mixed requests until the with-block ends; counts answers and failures."""

    def __init__(self, url: str, clients: int, seed: int = 0):
        self.url = f"{url}/v1/embeddings"
        self.words = " ".join(load_texts()).split()
        self.served = 0
        self.failures: list[str] = []
        super().__init__(clients, seed)

    def _client(self, seed: int) -> None:
        rng, session = random.Random(seed), requests.Session()
        while self.running:
            body = {"input": random_request(rng, self.words), "encoding_format": rng.choice(("base64", "float"))}
            try:
                status = session.post(self.url, json=body, timeout=120).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            if status == 200:
                self.served += 1
            else:
                self.failures.append(str(status))
