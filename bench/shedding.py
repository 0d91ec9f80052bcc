"""How many requests the proxy should admit per worker: python -m bench.shedding (needs nginx on PATH).

One gunicorn (2 workers), one nginx per PROXY_MAX_IN_FLIGHT under test (deploy/nginx/start.sh), all driven
alternately by the same clients: each sends mixed requests (1-32 real texts) and, like the OpenAI SDK, waits
Retry-After and sends again when shed. Prints texts/s, latency of the answered requests and /health's latency.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from harness.proxy import LocalProxy
from harness.server import ROOT, GunicornServer
from harness.workload import REQUEST_SIZES, load_texts


def one_round(url: str, clients: int, seconds: float, texts: list[str]) -> dict:
    """Drive url with clients for seconds; texts/s, p50/p99 of answered requests, shed share, worst /health wait."""
    stop, latencies, embedded, shed, health = threading.Event(), [], [0], [0], [0.0]

    def client(seed: int) -> None:
        rng, session = random.Random(seed), requests.Session()
        while not stop.is_set():
            batch = rng.sample(texts, rng.choice(REQUEST_SIZES))
            started = time.monotonic()
            response = session.post(f"{url}/v1/embeddings", json={"input": batch}, timeout=300)
            if response.status_code == 503:
                shed[0] += 1
                time.sleep(float(response.headers.get("Retry-After", 1)))
                continue
            response.raise_for_status()
            latencies.append(time.monotonic() - started)
            embedded[0] += len(batch)

    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            requests.get(f"{url}/health", timeout=300).raise_for_status()
            health[0] = max(health[0], time.monotonic() - started)
            time.sleep(1)

    with ThreadPoolExecutor(clients + 1) as pool:
        futures = [pool.submit(client, seed) for seed in range(clients)] + [pool.submit(probe)]
        time.sleep(seconds)
        stop.set()
        for future in futures:
            future.result()
    quantiles = statistics.quantiles(latencies, n=100)
    return {"texts/s": embedded[0] / seconds, "p50 s": quantiles[49], "p99 s": quantiles[98],
            "shed %": 100 * shed[0] / (shed[0] + len(latencies)), "health max s": health[0]}


def main() -> None:
    """Alternate rounds over the limits under test; print one markdown row per limit, averaged over rounds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-worker", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    texts, workdir = load_texts(), f"/tmp/bench-shedding-{os.getpid()}"
    results: dict[int, list[dict]] = {k: [] for k in args.per_worker}
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    with GunicornServer(ROOT / "bench" / "results" / "shedding-gunicorn.log", workers=2) as server:
        proxies = {k: LocalProxy(server, Path(f"{workdir}-nginx-{k}.log"),
                                 PROXY_MAX_IN_FLIGHT=str(2 * k)).start() for k in args.per_worker}
        try:
            for _ in range(args.rounds):
                for k, proxy in proxies.items():
                    results[k].append(one_round(proxy.url, args.clients, args.seconds, texts))
        finally:
            for proxy in proxies.values():
                proxy.stop()
    keys = list(results[args.per_worker[0]][0])
    print(f"{args.clients} clients, 2 workers, {args.rounds} x {args.seconds:.0f} s alternating\n")
    print("| admitted per worker | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for k, rounds in results.items():
        print(f"| {k} | " + " | ".join(f"{statistics.mean(r[key] for r in rounds):.2f}" for key in keys) + " |")


if __name__ == "__main__":
    main()
