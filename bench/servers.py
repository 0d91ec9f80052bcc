"""Real gunicorn servers on the workload: the workers x threads sweep and every mode, the ceiling beside each."""

from __future__ import annotations

import multiprocessing

import requests

from harness.server import ROOT, GunicornServer, rss_mb

from .ceiling import CeilingProcesses
from .load import run_load
from .report import table
from .scrape import scrape

RESULTS = ROOT / "bench" / "results"
DEFAULT_CONFIG = "2xauto"  # .env's EMBEDDING_SERVER_WORKERS x THREADS_PER_WORKER; the per-mode runs use it too
LOAD_HEADER = ["config", "concurrency", "texts/s", "requests/s", "p50 ms", "p95 ms", "p99 ms", "errors",
               "ceiling texts/s", "server ÷ ceiling", "padded ÷ real tokens", "real tokens/s per core",
               "% of GEMM roofline"]

CEILING_NOTE = (
    "Ceiling: the same requests, model, mode and thread budget embedded in-process by as many fresh processes as "
    "the server has workers (`Embedder.embed` after the worker's own `load_models`; no HTTP, JSON or base64), "
    "their rates summed as if the server balanced its requests perfectly; for `auto`, each process gets the share "
    "of the cores a worker has when all are busy (cores ÷ workers). BERT models run padding-free there as in the "
    "server: no padding token anywhere (attention runs per group of equal lengths), so server ÷ ceiling cannot hide "
    "a padding loss. Padded ÷ real tokens: the server's own batches on this workload, from its /metrics "
    "(1 + `embedding_padding_tokens_total` ÷ `embedding_tokens_total`, before and after the runs). Real tokens/s "
    "per core: texts/s × real tokens per text ÷ min(workers × threads, cores) (`auto`: the cores); % of the GEMM "
    "roofline of the mode in the Roofline table.")


def parse_config(config: str) -> tuple[int, int | None]:
    """'2x1' -> (2, 1); '2xauto' -> (2, None)."""
    workers, threads = config.split("x")
    return int(workers), None if threads == "auto" else int(threads)


def serve(workload, quantize: str, config: str, concurrency: tuple[int, ...], rounds: int) -> dict:
    """Start gunicorn and the ceiling processes; load the server, then alternate saturation and ceiling runs."""
    workers, threads = parse_config(config)
    cores = multiprocessing.cpu_count()
    log = RESULTS / f"gunicorn-{quantize}-{config}.log"
    with GunicornServer(log, workers=workers, QUANTIZE=quantize, MODEL_NAME="",
                        EMBEDDING_SERVER_THREADS_PER_WORKER=str(threads or "auto")) as server, \
            CeilingProcesses(workload, quantize, workers, threads or max(1, cores // workers)) as ceiling:
        run_load(server.url, workload, concurrency[-1])  # warm-up: every batch shape once, as the ceiling had
        before = scrape(server.url)
        loads = [run_load(server.url, workload, c) for c in concurrency]
        # Best of alternating runs: the other processes on a shared machine only ever slow a run down,
        # and alternating lets a burst of their load hit the server and the ceiling alike.
        best = ceiling.measure()
        for _ in range(rounds - 1):
            loads[-1] = max(loads[-1], run_load(server.url, workload, concurrency[-1]), key=lambda r: r.texts_per_s)
            best = max(best, ceiling.measure())
        work = scrape(server.url) - before
        worker_rss = max(rss_mb(pid) for pid in server.worker_pids())
        ready = max(server.ready_seconds())
        mode = requests.get(f"{server.url}/health", timeout=30).json()["mode"]  # QUANTIZE=true: measured at load
        return {"mode": mode, "loads": loads, "ceiling": best, "raw_rss": ceiling.rss_mb, "worker_rss": worker_rss, "ready": ready,
                "work": work, "cores": min(workers * threads, cores) if threads else cores}


def load_rows(label: str, run: dict, roofline: float | None) -> list[list]:
    """One row per concurrency: the ceiling, padding of the server's batches and real tokens/s against roofline."""
    ceiling, work = run["ceiling"], run["work"]
    rows = []
    for r in run["loads"]:
        per_core = r.texts_per_s * work.tokens_per_input / run["cores"]
        rows.append([label, r.concurrency, r.texts_per_s, r.requests_per_s, r.p50_ms, r.p95_ms, r.p99_ms, r.errors,
                     ceiling, f"{r.texts_per_s / ceiling:.2f}", f"{work.padded_per_real:.3f}", f"{per_core:.0f}",
                     f"{100 * per_core / roofline:.0f} %" if roofline else "-"])
    return rows


def memory_row(label: str, run: dict) -> list:
    """Worker RSS against the raw-model process RSS, and the worker's ready time."""
    raw = run["raw_rss"]
    return [label, run["worker_rss"], raw, f"{run['worker_rss'] / raw:.2f}", run["ready"]]


def server_sections(workload, plan: dict, rooflines: dict[str, float], emit) -> None:
    """The workers x threads sweep, memory and start-up, then every mode served with the default config."""
    def roofline(run: dict) -> float | None:
        return rooflines.get(run["mode"])

    sweep = {}
    for config in plan["sweep"]:
        sweep[config] = serve(workload, "true", config, plan["concurrency"], plan["rounds"])
    emit("Workers × threads (QUANTIZE=true)", table(LOAD_HEADER, [row for c, run in sweep.items()
                                                                   for row in load_rows(c, run, roofline(run))])
         + "\n\n" + CEILING_NOTE)
    emit("Memory and start-up (RSS MB)", table(["config", "worker RSS", "raw model process RSS", "ratio",
                                                "ready after fork s"],
                                               [memory_row(c, run) for c, run in sweep.items()]))
    default = sweep.get(DEFAULT_CONFIG)
    by_mode = {"true": {**default, "loads": default["loads"][-1:]}} if default else {}
    for mode in plan["server_modes"]:
        by_mode[mode] = serve(workload, mode, DEFAULT_CONFIG, plan["concurrency"][-1:], plan["rounds"])
    emit(f"Server per mode ({DEFAULT_CONFIG}, saturated)",
         table(LOAD_HEADER, [row for m, run in by_mode.items() for row in load_rows(m, run, roofline(run))]))
