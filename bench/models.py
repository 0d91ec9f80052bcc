"""Memory per worker per model and start-up time with one and two models, measured side by side in one run.

    python -m bench.models [--rounds 3]

Each round starts gunicorn (1 worker, QUANTIZE=true) with the packaged model alone, then with the packaged
model plus a copy of it under another name, alternately; it reports the worker's RSS once ready and after
a few requests to every model, and the time from launching gunicorn to the first 200 from /health.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import requests

from embedding_app.inference.model_source import default_model_dir
from harness.server import GunicornServer, rss_mb


def measure(model_name: str, log: Path) -> tuple[float, float, float]:
    """Seconds to ready, worker RSS (MB) when ready and after requests, for one MODEL_NAME."""
    started = time.perf_counter()
    with GunicornServer(log, workers=1, MODEL_NAME=model_name, QUANTIZE="true") as server:
        ready = time.perf_counter() - started
        [pid] = server.worker_pids()
        idle = rss_mb(pid)
        for model in requests.get(f"{server.url}/v1/models", timeout=30).json()["data"]:
            for _ in range(5):
                body = {"model": model["id"], "input": ["a sentence of a few words"] * 32 + ["word " * 300] * 4}
                requests.post(f"{server.url}/v1/embeddings", json=body, timeout=120).raise_for_status()
        return ready, idle, rss_mb(pid)


def main() -> None:
    """Run the rounds and print one table row per configuration (medians)."""
    parser = argparse.ArgumentParser(prog="python -m bench.models")
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(default_model_dir(), Path(tmp) / "minilm-copy")
        configs = {"1 model (default)": "default", "2 models (default,copy=...)": f"default,copy={copy}"}
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in configs}
        for _ in range(rounds):
            for name, model_name in configs.items():
                results[name].append(measure(model_name, Path(tmp) / "gunicorn.log"))
    print("| models | ready after launch (s) | worker RSS ready (MB) | worker RSS after requests (MB) |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        ready, idle, busy = (statistics.median(column) for column in zip(*rows))
        print(f"| {name} | {ready:.1f} | {idle:.0f} | {busy:.0f} |")


if __name__ == "__main__":
    main()
