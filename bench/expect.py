"""What to expect on this CPU: the server with default settings over HTTP, one client and several, texts/s.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.expect [--requests 100] [--clients 1,4] [--rounds 2] [--env K=V,...]

The same mixed requests (1-32 real texts each, about 30 % of them long) are sent batched and as one text per
request, from each number of client threads in turn, best of rounds. The first line names the CPU, its
instruction sets and what QUANTIZE=true picked; the README's table per CPU class comes from this. With --env, a
second server with that environment (a tuning to weigh) runs beside the default one, the runs alternating, and the
table adds its texts/s, the ratios and both servers' worker memory.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack

import requests

from harness.server import GunicornServer, rss_mb
from harness.workload import load_texts, make_requests, split_by_length

from .compare import best_of
from .load import run_load
from .report import environment, load_average, machine, table
from .servers import RESULTS


def run(requests_count: int, clients: list[int], rounds: int, env: dict[str, str] | None = None) -> str:
    """Markdown: texts/s of the default server on mixed batches and on one text per request, per client count
    (and of a server with env beside it, when given)."""
    from transformers import AutoTokenizer

    from embedding_app.inference.model_source import default_model_dir

    short, long = split_by_length(load_texts(), AutoTokenizer.from_pretrained(default_model_dir()))
    batched = make_requests(short, long, requests_count)
    workloads = {"batched": batched, "one text": [[text] for request in batched for text in request]}
    configs = {"default": {}} | ({"tuned": env} if env else {})
    RESULTS.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        servers = {name: stack.enter_context(GunicornServer(RESULTS / f"gunicorn-expect-{name}.log", MODEL_NAME="",
                                                            **extra)) for name, extra in configs.items()}
        runs = {(name, kind, count): (lambda u=server.url, w=workload, c=count: run_load(u, w, c))
                for count in clients for kind, workload in workloads.items() for name, server in servers.items()}
        for key, warm_up in runs.items():
            if warm_up().errors:
                raise RuntimeError(f"failed requests {key}; see {RESULTS}/gunicorn-expect-{key[0]}.log")
        best = best_of(rounds, runs)
        mode = requests.get(f"{servers['default'].url}/health", timeout=30).json()["mode"]
        memory = {name: "/".join(f"{rss_mb(pid):.0f}" for pid in server.worker_pids())
                  for name, server in servers.items()}
    header, rows = _table(best, clients, list(workloads), tuned=bool(env))
    tuning = f"; tuned: {env}; worker RSS MB after the runs: " + ", ".join(
        f"{name} {value}" for name, value in memory.items()) if env else ""
    return (f"{machine()}; load {load_average()}; default settings (2 workers x auto threads, QUANTIZE=true -> "
            f"{mode}); {requests_count} mixed requests ({len(workloads['one text'])} texts), best of {rounds}{tuning}"
            "\n\n" + table(header, rows))


def _table(best: dict, clients: list[int], kinds: list[str], tuned: bool) -> tuple[list[str], list[list]]:
    """Header and rows: texts/s per client count and kind of request, then the tuned server's and the ratios."""
    header = ["clients", "texts/s, 1-32 texts per request", "texts/s, one text per request"]
    rows = [[f"{count} client{'s' if count > 1 else ''}"] + [round(best["default", kind, count], 1) for kind in kinds]
            for count in clients]
    if tuned:
        header += ["tuned: batched", "tuned: one text", "tuned / default: batched", "one text"]
        for row, count in zip(rows, clients, strict=True):
            row += [round(best["tuned", kind, count], 1) for kind in kinds] + [
                f"{best['tuned', kind, count] / best['default', kind, count]:.3f}" for kind in kinds]
    return header, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--clients", default="1,4", help="client thread counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--env", default="", help="KEY=VALUE[,KEY=VALUE]: a second server with this environment")
    args = parser.parse_args()
    try:
        env = environment(args.env.split(","))
    except ValueError as error:
        parser.error(str(error))
    print(run(args.requests, [int(count) for count in args.clients.split(",")], args.rounds, env))


if __name__ == "__main__":
    main()
