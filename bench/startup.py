"""Server start-up and memory of this checkout against a base commit, side by side in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.startup [--base COMMIT] [--rounds 4] [--env KEY=VALUE ...]

Each round launches gunicorn (2 workers, default settings plus --env) from the base commit's worktree and from this
checkout in turn, each with its own kernel-choice cache: the first round is a first start on this CPU (the probe
runs), the later ones read the cached choice. It reports the seconds from launch until every worker is ready, the
slowest worker's "ready ... after fork" (what a replacement worker takes), and the server's proportional memory
(PSS of the master and the workers) after a few requests.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests

from harness.server import ROOT, GunicornServer

from .checkout import worktree
from .report import environment, load_average, machine, table


def pss_mb(pid: int) -> float:
    """Proportional set size of a process (shared pages split among their users), in MB."""
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_once(root: Path, cache: Path, log: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """Seconds from launch to every worker ready, the slowest worker's seconds after fork, total PSS (MB)."""
    server = GunicornServer(log, root=root, KERNEL_CACHE_DIR=str(cache), **env)
    started = time.perf_counter()
    server.start(wait=False)
    try:
        while len(server.ready_seconds()) < server.workers:
            if server.process.poll() is not None or time.perf_counter() - started > 120:
                raise RuntimeError(f"gunicorn did not start:\n{server.log()}")
            time.sleep(0.02)
        wall = time.perf_counter() - started
        after_fork = max(server.ready_seconds())
        for _ in range(4):
            body = {"input": ["a sentence of a few words"] * 16 + ["word " * 200] * 2}
            requests.post(f"{server.url}/v1/embeddings", json=body, timeout=120).raise_for_status()
        memory = pss_mb(server.process.pid) + sum(pss_mb(pid) for pid in server.worker_pids())
        return wall, after_fork, memory
    finally:
        server.stop()


def run(base: str, rounds: int, env: dict[str, str]) -> str:
    """Markdown: first and cached starts and memory of the base commit and this checkout, and their ratios."""
    with worktree(ROOT, base) as base_root, tempfile.TemporaryDirectory() as tmp:
        roots = {base: base_root, "this checkout": ROOT}
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in roots}
        for _ in range(rounds):
            for name, root in roots.items():
                runs[name].append(start_once(root, Path(tmp) / name, Path(tmp) / "gunicorn.log", env))
    rows, cached = [], {}
    for name, results in runs.items():
        first, later = results[0], results[1:] or results
        cached[name] = [statistics.median(values) for values in zip(*later)]
        rows.append([name, f"{first[0]:.2f}", f"{first[1]:.2f}", *(f"{value:.2f}" for value in cached[name][:2]),
                     f"{cached[name][2]:.0f}"])
    new, old = cached["this checkout"], cached[base]
    settings = " ".join(f"{key}={value}" for key, value in env.items()) or "default settings"
    return (f"{machine()}; load {load_average()}; 2 workers, {settings}; medians of {max(1, rounds - 1)} cached "
            f"starts\n\n" + table(["checkout", "first start: all ready s", "first: slowest after fork s",
                                   "cached: all ready s", "cached: slowest after fork s", "PSS MB (master + workers)"],
                                  rows)
            + f"\n\nThis checkout / {base} (cached): all ready {new[0] / old[0]:.2f}x, after fork "
              f"{new[1] / old[1]:.2f}x, memory {new[2] / old[2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for both servers (repeatable)")
    args = parser.parse_args()
    print(run(args.base, args.rounds, environment(args.env)))


if __name__ == "__main__":
    main()
