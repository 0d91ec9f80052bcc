"""Workers × threads side by side over HTTP: fixed budgets against THREADS_PER_WORKER=auto, at 1, 2 and 4 clients."""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from harness.server import ROOT, GunicornServer
from harness.workload import load_texts, make_requests, split_by_length

from .load import LoadResult, run_load
from .report import environment

BASELINE = "2x1"


def server(config: str, results) -> GunicornServer:
    """A server for "WxT" (T a count or auto); each "+KEY=VALUE" is added to its environment."""
    shape, *extra = config.split("+")
    workers, threads = shape.split("x")
    env = environment(extra)
    return GunicornServer(results / f"gunicorn-threads-{config}.log", workers=int(workers), MODEL_NAME="",
                          EMBEDDING_SERVER_THREADS_PER_WORKER=threads, **env)


def measure(urls: dict[str, str], workload, clients: tuple[int, ...], rounds: int) -> dict:
    """The best-throughput run of every server at every client count, the servers alternating within each round."""
    best: dict[tuple[str, int], LoadResult] = {}
    for _ in range(rounds):
        for concurrency in clients:
            for config, url in urls.items():
                result = run_load(url, workload, concurrency)
                if (config, concurrency) not in best or result.texts_per_s > best[config, concurrency].texts_per_s:
                    best[config, concurrency] = result
    return best


def table(best: dict, configs: list[str], clients: tuple[int, ...]) -> str:
    """A markdown table: texts/s and latency per server and client count, with texts/s and p50 ratios to 2x1."""
    lines = ["| workers × threads | clients | texts/s | ÷ 2×1 | p50 ms | p50 ÷ 2×1 | p95 ms | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for concurrency in clients:
        base = best.get((BASELINE, concurrency))
        for config in configs:
            r = best[config, concurrency]
            ratio = f"{r.texts_per_s / base.texts_per_s:.2f}" if base else "-"
            p50_ratio = f"{r.p50_ms / base.p50_ms:.2f}" if base else "-"
            lines.append(f"| {config.replace('x', ' × ')} | {concurrency} | {r.texts_per_s:.1f} | {ratio} | "
                         f"{r.p50_ms:.0f} | {p50_ratio} | {r.p95_ms:.0f} | {r.errors} |")
    return "\n".join(lines)


def main() -> None:
    """Start every configuration at once, warm each up, then measure them alternately and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__)
    parser.add_argument("--configs", default="2x1,1x2,2xauto",
                        help="comma-separated WxT[+KEY=VALUE...], at most 3 (each bf16 worker holds ~450 MB)")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="1,2,4")
    options = parser.parse_args()
    configs = options.configs.split(",")
    clients = tuple(int(c) for c in options.clients.split(","))
    from transformers import AutoTokenizer

    from embedding_app.inference.model_source import default_model_dir

    short, long = split_by_length(load_texts(), AutoTokenizer.from_pretrained(default_model_dir()))
    workload = make_requests(short, long, options.requests)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        urls = {config: stack.enter_context(server(config, results)).url for config in configs}
        for url in urls.values():
            run_load(url, workload[:10], 2)  # warm-up: one-off kernel set-up in both workers
        best = measure(urls, workload, clients, options.rounds)
    print(f"{len(workload)} requests, {sum(map(len, workload))} texts (bf16, mixed short and long), "
          f"best of {options.rounds} rounds, the servers alternating within each round")
    print(table(best, configs, clients))


if __name__ == "__main__":
    main()
