"""Drive a running server with a fixed list of requests at a given concurrency; report throughput and latency."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import requests


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured."""

    concurrency: int
    texts_per_s: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int


def run_load(url: str, workload: list[list[str]], concurrency: int, encoding_format: str = "base64") -> LoadResult:
    """Send every request of workload once, from `concurrency` client threads, and time them."""
    pending = iter(enumerate(workload))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0

    def client() -> None:
        """Send pending requests one after another until none are left."""
        nonlocal errors
        session = requests.Session()
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            started = time.perf_counter()
            try:
                ok = session.post(f"{url}/v1/embeddings", timeout=300,
                                  json={"input": item[1], "encoding_format": encoding_format}).status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                latencies.append(time.perf_counter() - started)
                errors += not ok

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return LoadResult(concurrency, sum(map(len, workload)) / elapsed, len(workload) / elapsed,
                      *(float(np.percentile(ms, q)) for q in (50, 95, 99)), errors)
