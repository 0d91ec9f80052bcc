"""What to expect on this CPU: the server with default settings over HTTP, one client and several, texts/s.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.expect [--requests 100] [--clients 1,4] [--rounds 2]

The same mixed requests (1-32 real texts each, about 30 % of them long) are sent batched and as one text per
request, from each number of client threads in turn, best of rounds. The first line names the CPU, its
instruction sets and what QUANTIZE=true picked; the README's table per CPU class comes from this.
"""

from __future__ import annotations

import argparse

import requests

from harness.server import GunicornServer
from harness.workload import load_texts, make_requests, split_by_length

from .compare import best_of
from .load import run_load
from .report import load_average, machine, table
from .servers import RESULTS


def run(requests_count: int, clients: list[int], rounds: int) -> str:
    """Markdown: texts/s of the default server on mixed batches and on one text per request, per client count."""
    from transformers import AutoTokenizer

    from embedding_app.inference.model_source import default_model_dir

    short, long = split_by_length(load_texts(), AutoTokenizer.from_pretrained(default_model_dir()))
    batched = make_requests(short, long, requests_count)
    singles = [[text] for request in batched for text in request]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with GunicornServer(RESULTS / "gunicorn-expect.log", MODEL_NAME="") as server:
        runs = {(kind, count): (lambda w=workload, c=count: run_load(server.url, w, c))
                for count in clients for kind, workload in (("batched", batched), ("one text", singles))}
        for name, warm_up in runs.items():
            if warm_up().errors:
                raise RuntimeError(f"failed requests ({name}); see {RESULTS / 'gunicorn-expect.log'}")
        best = best_of(rounds, runs)
        mode = requests.get(f"{server.url}/health", timeout=30).json()["mode"]
    rows = [[f"{count} client{'s' if count > 1 else ''}", round(best["batched", count], 1),
             round(best["one text", count], 1)] for count in clients]
    return (f"{machine()}; load {load_average()}; default settings (2 workers x auto threads, QUANTIZE=true -> "
            f"{mode}); {requests_count} mixed requests ({len(singles)} texts), best of {rounds}\n\n"
            + table(["clients", "texts/s, 1-32 texts per request", "texts/s, one text per request"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--clients", default="1,4", help="client thread counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(run(args.requests, [int(count) for count in args.clients.split(",")], args.rounds))


if __name__ == "__main__":
    main()
