"""Worker memory under load: real gunicorn, a few clients of mixed batched requests, RSS per worker over time."""

from __future__ import annotations

import argparse
import time

from harness.clients import Soak
from harness.server import ROOT, GunicornServer, rss_mb

from .report import environment


def rss_over_time(pids: list[int], seconds: float, every: float) -> list[tuple[float, list[float]]]:
    """Samples of (seconds since start, RSS MB of each process) every `every` seconds for `seconds`."""
    started = time.monotonic()
    samples = [(0.0, [rss_mb(pid) for pid in pids])]
    while (elapsed := time.monotonic() - started) < seconds - 1e-3:
        time.sleep(min(every, seconds - elapsed))
        samples.append((time.monotonic() - started, [rss_mb(pid) for pid in pids]))
    return samples


def main() -> None:
    """Run one server per label in --env (KEY=VALUE,...) for --seconds each and print RSS per worker over time."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--every", type=float, default=10)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--env", action="append", default=[],
                        help="extra server environment, KEY=VALUE[,KEY=VALUE]; repeat to compare configurations")
    options = parser.parse_args()
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    for index, extra in enumerate(options.env or [""]):
        env = environment(extra.split(","))
        log = ROOT / "bench" / "results" / f"gunicorn-memory-{index}.log"
        with GunicornServer(log, workers=2, MODEL_NAME="", **env) as server, \
                Soak(server.url, options.clients) as soak:
            samples = rss_over_time(server.worker_pids(), options.seconds, options.every)
        print(f"## server env {extra or '(default)'}: {soak.served} requests, failures: {soak.failures[:5]}")
        for at, rss in samples:
            print(f"{at:6.0f} s  " + "  ".join(f"{mb:7.1f}" for mb in rss))


if __name__ == "__main__":
    main()
