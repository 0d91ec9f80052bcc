"""gunicorn settings, taken from embedding_app.config.settings (.env and the environment)."""

import errno
import glob
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

from embedding_app.config.settings import SettingsError, get_settings, settings_warnings
from embedding_app.inference.model_source import ModelSourceError, resolve_models
from embedding_app.runtime import status_board
from embedding_app.runtime.thread_budget import (
    attach,
    available_cores,
    create_board,
    free_slot,
    oversubscription,
)
from embedding_app.serving.allocator import with_huge_pages

# Large tensors on transparent huge pages (embedding_app/serving/allocator.py): 1.14-1.33x faster forwards. glibc takes the
# tunable only at start-up, so the master starts itself again with it, before anything else; workers inherit it.
_restart_env = with_huge_pages(dict(os.environ))
if _restart_env is not None:
    os.execve(sys.executable, sys.orig_argv, _restart_env)

try:
    settings = get_settings()
except SettingsError as exc:
    sys.exit(f"configuration error: {exc}")

# --- Server socket
bind = f"{settings.host}:{settings.port}"

# --- Workers
# Sync workers: one request at a time per process, each process with its own model copy and
# THREADS_PER_WORKER torch threads (auto: the cores, shared by the busy workers; a fixed number:
# workers x threads should not exceed the cores). The class is gunicorn's
# sync worker whose own error answers (malformed requests, 414, 431) are OpenAI-shaped JSON, not HTML.
worker_class = "embedding_app.serving.worker.JsonErrorSyncWorker"
workers = settings.workers
timeout = settings.timeout
graceful_timeout = settings.timeout
# Torch must never run in the master: OpenMP state does not survive fork (workers would hang).
preload_app = False
# gunicorn 27 opens a control socket shared by every instance under $HOME; several servers collide.
control_socket_disable = True
# The heartbeat file on tmpfs: a disk-backed /tmp (as in containers) can stall the heartbeat.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Seconds a worker stopped by the timeout has to send its 503 and exit before the master kills it.
ABORT_GRACE = 10

# --- Logging
accesslog = "-"
errorlog = "-"
loglevel = settings.log_level
# One line per request: when, who, what, status, size, duration, which worker, which client library.
access_log_format = '%(t)s %(h)s "%(r)s" %(s)s %(B)sB %(M)sms worker=%(p)s agent="%(a)s"'
# Successful /health and /metrics requests (probes, scrapes) stay out of the access log unless LOG_LEVEL=debug.
logger_class = "embedding_app.serving.access_log.QuietProbesLogger"


# --- Server hooks, in the order gunicorn calls them. The master runs on_starting, on_reload, pre_fork,
# child_exit and on_exit; post_fork, post_worker_init, worker_abort and worker_exit run in each worker.
# Flask, prometheus_client and torch are imported inside the hooks, never at the top of this file:
# prometheus_client chooses multiprocess mode when first imported, so PROMETHEUS_MULTIPROC_DIR must be
# set first, and torch must never load in the master.


def check_port_free(host: str, port: int, key: str = "EMBEDDING_SERVER_PORT") -> None:
    """Exit at once, naming the settings, if another process listens on host:port (gunicorn retries for 5 s)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound: {exc.strerror}"
            sys.exit(f"configuration error: port {port} on {host} {reason} ({key}="
                     f"{port}, EMBEDDING_SERVER_HOST={host}); stop the other server or choose another port")


METRICS_PREFIX = "embedding-metrics-"


def remove_dead_masters_metrics(parent: str | None) -> None:
    """Delete the metrics directories of masters that are gone (the pid in the name), left by a kill -9."""
    # on_exit removes a master's own directory, but a killed master runs no hook: each kill would leave one.
    # A pid in use (by anyone: kill reports EPERM) keeps its directory; a reused pid only delays the removal.
    for path in glob.glob(os.path.join(parent or tempfile.gettempdir(), f"{METRICS_PREFIX}*-*")):
        pid = os.path.basename(path)[len(METRICS_PREFIX):].partition("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def on_starting(server):
    """Check the port, resolve (for a Hub id, download) every model once and make the metrics directory."""
    # Kept on the arbiter, not in this module: SIGHUP keeps the arbiter (and the cached settings), so
    # reloaded workers get the same model and metrics without resolving anything again.
    if not server.master_pid:  # a master started by USR2 inherits the bound socket
        check_port_free(settings.host, settings.port)
        check_port_free(settings.host, settings.health_port, "EMBEDDING_SERVER_HEALTH_PORT")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    remove_dead_masters_metrics(worker_tmp_dir)
    try:
        server.model_sources = resolve_models(settings.models, settings.hf_token)
    except ModelSourceError as exc:
        server.log.error("cannot load a model of MODEL_NAME: %s", exc)
        sys.exit(1)
    for source in server.model_sources:
        server.log.info("model %s from %s%s", source.served_name, source.path,
                        f" (also answers to {', '.join(source.aliases)})" if source.aliases else "")
    for warning in settings_warnings():
        server.log.warning("configuration: %s", warning)
    crowded = oversubscription(settings.workers, settings.threads_per_worker, available_cores())
    if crowded:
        server.log.warning("%s", crowded)
    keys = len(settings.api_keys)
    server.log.info("API key %s; CORS %s", f"required ({keys} configured)" if keys else "not required",
                    ", ".join(settings.cors_allow_origins) or "off")
    # Made last, so that no failure above leaves it behind; on tmpfs because every request writes to it.
    # Named after the master's pid so that each server's directory is recognisable.
    server.metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-", dir=worker_tmp_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = server.metrics_dir
    # Each worker's state (loaded, busy, request times), for the health responder and admission.
    server.status_board = status_board.create(settings.workers)
    if settings.threads_per_worker is None:  # auto: the workers share the cores through this board
        server.thread_board = create_board(settings.workers)
    # SIGHUP runs on_reload alone: a rolling replacement instead of gunicorn's all-at-once reload.
    server.reload = lambda: on_reload(server)


def when_ready(server):
    """Answer /health, /livez and /readyz from a thread of this master, on EMBEDDING_SERVER_HEALTH_PORT."""
    from embedding_app.serving import health_server

    if not getattr(server, "health_responder", False):  # once per master, not again on reloads
        health_server.start(server, settings.host, settings.health_port)
        server.health_responder = True
    server.log.info("health, liveness and readiness on %s:%d (/health, /livez, /readyz)", settings.host,
                    settings.health_port)


def on_reload(server):
    """Replace the workers one at a time, each old one stopped only once its successor has loaded the model."""
    from embedding_app.serving.rolling import rolling_reload

    rolling_reload(server)


def pre_fork(server, worker):
    """Give the worker about to fork its slot of the status board (and of the busy-workers board under auto)."""
    worker.slot = status_board.assign_slot(server.status_board, server.WORKERS.values())


def post_fork(server, worker):
    """Load and quantize every model in this worker; a failure stops gunicorn with the reason."""
    # Until gunicorn installs the worker's handlers (after loading), the master's copies would swallow a
    # stop signal and shutdown would wait the whole graceful timeout. A worker still loading serves
    # nothing, so it exits at once; os._exit because libraries loading the model may swallow SystemExit.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, lambda *_: os._exit(0))
    app_log = logging.getLogger("embedding_app")
    app_log.handlers = server.log.error_log.handlers
    app_log.setLevel(settings.log_level.upper())
    app_log.propagate = False
    from embedding_app.api.system import health_body
    from embedding_app.runtime import metrics
    from embedding_app.runtime.registry import load_worker_models
    from embedding_app.serving.health_server import write_health

    metrics.use_multiprocess_dir(server.metrics_dir)
    status_board.attach(server.status_board, worker.slot, os.getpid(), worker.notify, worker.sockets)
    threads = attach(server.thread_board, worker.slot) if settings.threads_per_worker is None else 0
    try:
        registry = load_worker_models(settings, server.model_sources, threads)
    except Exception as exc:
        worker.log.error("cannot load model(s) %s: %s", ", ".join(s.served_name for s in server.model_sources), exc)
        raise
    write_health(server.metrics_dir, health_body(registry))
    status_board.mark_ready()


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

    from embedding_app.api.errors import ApiError

    # gunicorn calls this from its SIGABRT handler, then exits the worker; raising here unwinds the
    # request instead, Flask renders the error, and the worker exits after sending it (alive is False).
    # Without a newer heartbeat the master's next check (within a second) would SIGKILL the worker before it
    # has sent the 503 and exited, logged as "Perhaps out of memory?". This one leaves it ABORT_GRACE seconds.
    beat = time.monotonic() - settings.timeout + min(ABORT_GRACE, settings.timeout)
    os.utime(worker.tmp.fileno(), (beat, beat))  # gunicorn's heartbeat is this file's mtime, in monotonic time
    if has_request_context():
        worker.log.error("%s %s took longer than the %ds timeout: answering 503, then replacing this worker",
                         request.method, request.path, settings.timeout)
        # The same request would time out again: tell the OpenAI SDK not to retry it.
        raise ApiError(503, f"The request took longer than this server's time limit of {settings.timeout}s "
                            "(EMBEDDING_SERVER_TIMEOUT) and was stopped; send fewer or shorter inputs per request",
                       code="timeout", headers={"x-should-retry": "false"})


def worker_exit(server, worker):
    """A worker stopping normally skips the interpreter's teardown, which spends seconds in torch's native code."""
    # Until it is gone the master counts it as alive (and after a timeout kills it as if out of memory);
    # nothing is left to save: metrics are in shared memory maps, and the logs are flushed here.
    stopping = sys.exc_info()[1]
    if os.getpid() == worker.pid and isinstance(stopping, SystemExit) and stopping.code in (0, None):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def child_exit(server, worker):
    """Say why a worker stopped when it was the timeout; fold its metrics files; free its thread-budget slot."""
    from embedding_app.serving.metrics_files import fold_dead_worker

    # gunicorn logs a worker it had to SIGKILL as "Perhaps out of memory?"; say when the timeout stopped it.
    if worker.aborted:  # the master sent SIGABRT: the worker's heartbeat was older than the timeout
        server.log.warning("worker %s stopped by the %ds timeout (EMBEDDING_SERVER_TIMEOUT): a request ran longer, "
                           "or the worker hung; a new worker replaces it", worker.pid, settings.timeout)
    fold_dead_worker(worker.pid, server.metrics_dir)
    status_board.clear(server.status_board, worker.slot)  # it may have died inside a request, marked busy
    if settings.threads_per_worker is None:
        free_slot(server.thread_board, worker.slot)
        server.log.info("worker %s exited: thread-budget slot %s is free", worker.pid, worker.slot)


def on_exit(server):
    """Remove the metrics directory (on every exit after on_starting made it, failed starts included)."""
    shutil.rmtree(getattr(server, "metrics_dir", ""), ignore_errors=True)
