"""Prometheus metrics: HTTP requests, texts and tokens, padding, batch sizes, time to ready, workers, torch threads,
and the mode and kernels chosen at load.

Under gunicorn every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR (set by
serving/hooks.py before any worker starts) and /metrics merges them, so any worker answers for all.
"""

from __future__ import annotations

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

# Latencies of one short text (~10 ms) up to a request near the token limit (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

REQUESTS = Counter("embedding_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram("embedding_http_request_duration_seconds", "Time to answer an HTTP request",
                    ["route", "method", "status"], buckets=LATENCY_BUCKETS)
# The model label takes only served names (the closed set in MODEL_NAME), never what a client sent.
INPUTS = Counter("embedding_inputs_total", "Inputs embedded (texts or token-id lists) or query-document pairs scored",
                 ["model"])
TOKENS = Counter("embedding_tokens_total", "Tokens embedded, prompts and special tokens included, padding excluded",
                 ["model"])
TRUNCATED = Counter("embedding_truncated_inputs_total", "Inputs cut to the model's maximum length (TRUNCATE=true)",
                    ["model"])
# Padded / real tokens = 1 + this counter / embedding_tokens_total: 0 on the packed (BERT) path.
PADDING = Counter("embedding_padding_tokens_total", "Padding tokens the model computed beside the real tokens")
REQUEST_INPUTS = Histogram("embedding_request_inputs", "Inputs per embeddings request", buckets=SIZE_BUCKETS)
BATCH_SIZE = Histogram("embedding_batch_size", "Inputs per forward pass of the model", buckets=SIZE_BUCKETS)
# live* modes: a worker's values vanish when gunicorn's child_exit marks it dead.
READY = Gauge("embedding_worker_ready_seconds",
              "Seconds from the worker's fork until it could serve: imports, model load, quantization, warm-up",
              multiprocess_mode="liveall")
WORKERS = Gauge("embedding_workers", "Worker processes with a loaded model", multiprocess_mode="livesum")
THREADS = Gauge("embedding_worker_torch_threads", "Torch threads of the worker's latest forward pass "
                "(THREADS_PER_WORKER=auto: its share of the cores when it started)", multiprocess_mode="liveall")
# What the load-time probe chose and measured (embedding_app/inference/kernel_choice.py): labels are served names, modes
# and the model's own layer shapes, a closed set.
MODE = Gauge("embedding_model_mode", "1 for the mode each worker runs a model in (QUANTIZE=true: measured fastest)",
             ["model", "mode"], multiprocess_mode="liveall")
KERNEL = Gauge("embedding_model_kernel", "1 for the kernel each matrix multiplication shape runs (onednn or F.linear)",
               ["model", "shape", "kernel"], multiprocess_mode="liveall")
PROBE = Gauge("embedding_probe_tokens_per_second", "Tokens/s of each timed mode on the load-time probe",
              ["model", "mode"], multiprocess_mode="liveall")

# Label values must come from a closed set: every new value is a new series in every worker's file,
# and gunicorn passes any token as the method, so one client could otherwise grow /metrics without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})

_multiprocess_dir: str | None = None


def use_multiprocess_dir(path: str) -> None:
    """Merge every worker's values from this directory when rendering (called in each gunicorn worker)."""
    global _multiprocess_dir
    _multiprocess_dir = path


def worker_ready(ready_seconds: float) -> None:
    """Count this process as a live worker that became ready ready_seconds after its fork."""
    READY.set(ready_seconds)
    WORKERS.set(1)


def torch_threads(threads: int) -> None:
    """Record the torch threads this worker computes with now."""
    THREADS.set(threads)


def record_choice(model: str, mode: str, kernels: dict[str, str], speeds: dict[str, float]) -> None:
    """Record the mode, kernels and probe speeds a worker chose for a served model."""
    MODE.labels(model, mode).set(1)
    for shape, kernel in kernels.items():
        KERNEL.labels(model, shape, kernel).set(1)
    for timed, speed in speeds.items():
        PROBE.labels(model, timed).set(speed)


def record_embeddings(model: str, inputs: int, tokens: int, truncated: int) -> None:
    """Count one embeddings request's inputs, tokens and truncated inputs for the served model that ran it."""
    INPUTS.labels(model).inc(inputs)
    TOKENS.labels(model).inc(tokens)
    TRUNCATED.labels(model).inc(truncated)
    REQUEST_INPUTS.observe(inputs)


def record_batch(size: int, padding: int = 0) -> None:
    """Record the number of inputs in one forward pass and the padding tokens it computed."""
    BATCH_SIZE.observe(size)
    PADDING.inc(padding)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered HTTP request and its latency; an unknown method is counted as "other"."""
    labels = (route, method if method in METHODS else "other", str(status))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(seconds)


def render() -> bytes:
    """The metrics of all workers (or of this process outside gunicorn) in Prometheus text format."""
    registry = REGISTRY
    if _multiprocess_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=_multiprocess_dir)
    return generate_latest(registry)
