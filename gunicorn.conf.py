"""gunicorn settings, taken from embedding_app.settings (.env and the environment)."""

import logging
import os
import shutil
import signal
import sys
import tempfile

from embedding_app.model_source import ModelSourceError, resolve_model
from embedding_app.settings import SettingsError, get_settings

try:
    settings = get_settings()
except SettingsError as exc:
    sys.exit(f"configuration error: {exc}")

# --- Server socket
bind = f"{settings.host}:{settings.port}"

# --- Workers
# Sync workers: one request at a time per process, each process with its own model copy and
# THREADS_PER_WORKER torch threads; workers x threads should not exceed the cores.
# gunicorn's sync worker, except that the errors it answers itself (malformed requests, 414, 431) are
# OpenAI-shaped JSON like every other error, not HTML pages.
worker_class = "embedding_app.worker.JsonErrorSyncWorker"
workers = settings.workers
timeout = settings.timeout
graceful_timeout = settings.timeout
# Torch must never run in the master: OpenMP state does not survive fork (workers would hang).
preload_app = False
# gunicorn 27 opens a control socket shared by every instance under $HOME; several servers collide.
control_socket_disable = True
# The heartbeat file on tmpfs: a disk-backed /tmp (as in containers) can stall the heartbeat.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# --- Logging
accesslog = "-"
errorlog = "-"
loglevel = settings.log_level
# One line per request: when, who, what, status, size, duration, which worker, which client library.
access_log_format = '%(t)s %(h)s "%(r)s" %(s)s %(B)sB %(M)sms worker=%(p)s agent="%(a)s"'
# Successful /health and /metrics requests (probes, scrapes) stay out of the access log unless LOG_LEVEL=debug.
logger_class = "embedding_app.access_log.QuietProbesLogger"

def on_starting(server):
    """Make the metrics directory and resolve (for a Hub id, download) the model once, before any worker forks."""
    # Kept on the arbiter, not in this module: SIGHUP re-executes this file but keeps the arbiter (and the
    # cached settings), so reloaded workers get the same model and metrics without resolving anything again.
    # prometheus_client picks multiprocess mode when it is first imported, i.e. in each worker after fork;
    # the directory is on tmpfs because every request writes to it.
    server.metrics_dir = tempfile.mkdtemp(prefix="embedding-metrics-", dir=worker_tmp_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = server.metrics_dir
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        server.model_source = resolve_model(settings.model_name, settings.hf_token, settings.served_model_name)
    except ModelSourceError as exc:
        server.log.error("cannot load model %r: %s", settings.model_name or "default", exc)
        sys.exit(1)
    server.log.info("model %s from %s", server.model_source.served_name, server.model_source.path)
    keys = len(settings.api_keys)
    server.log.info("API key %s; CORS %s", f"required ({keys} configured)" if keys else "not required",
                    ", ".join(settings.cors_allow_origins) or "off")


def post_fork(server, worker):
    """Load and quantize the model in this worker; a failure stops gunicorn with the reason."""
    # Until gunicorn installs the worker's handlers (after loading), the master's copies would swallow a
    # stop signal and shutdown would wait the whole graceful timeout. A worker still loading serves
    # nothing, so it exits at once; os._exit because libraries loading the model may swallow SystemExit.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, lambda *_: os._exit(0))
    app_log = logging.getLogger("embedding_app")
    app_log.handlers = server.log.error_log.handlers
    app_log.setLevel(settings.log_level.upper())
    app_log.propagate = False
    from embedding_app import metrics
    from embedding_app.runtime import load_worker_model

    metrics.use_multiprocess_dir(server.metrics_dir)
    source = server.model_source
    try:
        load_worker_model(settings, source)
    except Exception as exc:
        worker.log.error("cannot load model %s from %s: %s", source.served_name, source.path, exc)
        raise


def child_exit(server, worker):
    """Drop a dead worker's live gauges (worker count, load time); its counters stay in the totals."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, server.metrics_dir)


def on_exit(server):
    """Remove the metrics directory."""
    shutil.rmtree(server.metrics_dir, ignore_errors=True)


def post_worker_init(worker):
    """On SIGTERM stop listening at once, so new connections are refused rather than queued behind a busy worker."""
    # A worker finishing a long request keeps the shared listening socket open, and the kernel keeps
    # accepting connections that are reset when it exits. Pointing this worker's copy of the socket at
    # /dev/null lets the listener close once the master's copy is gone; select() then sees a readable
    # fd, and the loop exits because alive is False. On HUP the new workers keep their own copies.
    # Only a worker inside a request needs this: an idle one leaves its loop at once, and swapping the fd
    # while gunicorn is between accept() and reading the socket's address would break that request.
    from flask import has_request_context

    def stop_listening(signum, frame):
        """Stop as gunicorn does; inside a request, also drop this worker's copy of the listener."""
        worker.handle_exit(signum, frame)
        if not has_request_context():
            return
        devnull = os.open(os.devnull, os.O_RDONLY)
        for listener in worker.sockets:
            os.dup2(devnull, listener.fileno())
        os.close(devnull)

    signal.signal(signal.SIGTERM, stop_listening)


def worker_abort(worker):
    """On a timeout, answer the request in hand with an OpenAI-shaped 503 instead of gunicorn's empty 500."""
    from flask import has_request_context, request

    from embedding_app.errors import ApiError

    # gunicorn calls this from its SIGABRT handler, then exits the worker; raising here unwinds the
    # request instead, Flask renders the error, and the worker exits after sending it (alive is False).
    if has_request_context():
        worker.log.error("%s %s took longer than the %ds timeout: answering 503, then replacing this worker",
                         request.method, request.path, settings.timeout)
        # The same request would time out again: tell the OpenAI SDK not to retry it.
        raise ApiError(503, f"The request took longer than this server's time limit of {settings.timeout}s "
                            "(EMBEDDING_SERVER_TIMEOUT) and was stopped; send fewer or shorter inputs per request",
                       code="timeout", headers={"x-should-retry": "false"})
