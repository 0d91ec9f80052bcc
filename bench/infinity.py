"""This server against Infinity (torch engine) over HTTP, side by side: mixed batches and one text per request.

    python3 -m venv .venv-infinity
    .venv-infinity/bin/pip install torch==2.13.0 'infinity-emb[torch,server]==0.0.78'
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.infinity --infinity .venv-infinity/bin/infinity_emb

Both serve the packaged all-MiniLM-L6-v2 with their default settings (this server: 2 workers x auto threads);
the same clients send the same requests to each in turn, best of rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from harness.server import GunicornServer, free_port
from harness.workload import load_texts, make_requests, split_by_length

from .compare import best_of
from .load import run_load
from .report import load_average, machine, table
from .servers import RESULTS


@contextmanager
def infinity_server(command: str, model_dir: str, log: Path, timeout: float = 600):
    """Infinity serving model_dir under /v1 on a free port; yields its base URL once it answers."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    with open(log, "w") as out:
        process = subprocess.Popen([command, "v2", "--model-id", model_dir, "--served-model-name", "all-MiniLM-L6-v2",
                                    "--url-prefix", "/v1", "--engine", "torch", "--device", "cpu",
                                    "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while not _answers(f"{url}/v1/models"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Infinity did not start; see {log}")
                time.sleep(1)
            yield url
        finally:
            process.terminate()
            process.wait(30)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def run(command: str, requests_count: int, concurrency: int, rounds: int) -> str:
    """Markdown: texts/s of both servers on mixed batches and on one text per request, and the ratios."""
    from transformers import AutoTokenizer

    from embedding_app.inference.model_source import default_model_dir

    model_dir = str(default_model_dir())
    short, long = split_by_length(load_texts(), AutoTokenizer.from_pretrained(model_dir))
    batched = make_requests(short, long, requests_count)
    singles = [[text] for request in batched for text in request]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with GunicornServer(RESULTS / "gunicorn-vs-infinity.log", MODEL_NAME="") as ours, \
            infinity_server(command, model_dir, RESULTS / "infinity.log") as theirs:
        runs = {("this server", "batched"): lambda: run_load(ours.url, batched, concurrency),
                ("Infinity", "batched"): lambda: run_load(theirs, batched, concurrency),
                ("this server", "one text"): lambda: run_load(ours.url, singles, concurrency),
                ("Infinity", "one text"): lambda: run_load(theirs, singles, concurrency)}
        for name, warm_up in runs.items():  # also checks that both answer every request
            if warm_up().errors:
                raise RuntimeError(f"{name[0]} failed requests ({name[1]}); see the logs in {RESULTS}")
        best = best_of(rounds, runs)
        mode = requests.get(f"{ours.url}/health", timeout=30).json()["mode"]
    rows = [[kind, round(best["this server", kind], 1), round(best["Infinity", kind], 1),
             f"{best['this server', kind] / best['Infinity', kind]:.2f}x"] for kind in ("batched", "one text")]
    return (f"{machine()}; load {load_average()}; this server: default settings (QUANTIZE=true -> {mode}); "
            f"Infinity 0.0.78 torch engine, its defaults; {concurrency} clients, {requests_count} mixed requests "
            f"({len(singles)} texts), best of {rounds}\n\n"
            + table(["requests", "this server texts/s", "Infinity texts/s", "ratio"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--infinity", default=".venv-infinity/bin/infinity_emb", help="the infinity_emb command")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(run(args.infinity, args.requests, args.concurrency, args.rounds))


if __name__ == "__main__":
    main()
