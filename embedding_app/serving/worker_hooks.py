"""gunicorn's server hooks that run in each worker: load the models, stop listening on SIGTERM, answer a timeout.

Flask, prometheus_client and torch are imported inside the hooks: gunicorn.conf.py imports this module in the master.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from embedding_app.config.settings import get_settings
from embedding_app.runtime import status_board

from .rolling import STOP_SIGNALS

# Seconds a worker stopped by the timeout has to send its 503 and exit before the master kills it.
ABORT_GRACE = 10


def post_fork(server, worker) -> None:
    """Load and quantize every model in this worker; a failure stops gunicorn with the reason."""
    # Until gunicorn installs the worker's handlers (after loading), the master's copies would swallow a
    # stop signal and shutdown would wait the whole graceful timeout. A worker still loading serves
    # nothing, so it exits at once; os._exit because libraries loading the model may swallow SystemExit.
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: os._exit(0))
    settings = get_settings()
    app_log = logging.getLogger("embedding_app")
    app_log.handlers = server.log.error_log.handlers
    app_log.setLevel(settings.log_level.upper())
    app_log.propagate = False
    from embedding_app.api.system import health_body
    from embedding_app.runtime import metrics
    from embedding_app.runtime.loading import load_models

    from .health_server import write_health

    metrics.use_multiprocess_dir(server.metrics_dir)
    status_board.attach(server.status_board, worker.slot, os.getpid(), worker.notify, worker.sockets)
    server.thread_budget.attach(worker.slot)
    try:
        registry = load_models(settings, server.model_sources, server.thread_budget)
    except Exception as exc:
        worker.log.error("cannot load model(s) %s: %s", ", ".join(s.served_name for s in server.model_sources), exc)
        raise
    write_health(server.metrics_dir, health_body(registry))
    status_board.mark_ready()


def post_worker_init(worker) -> None:
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


def worker_abort(worker) -> None:
    """On a timeout, answer the request in hand with an OpenAI-shaped 503 instead of gunicorn's empty 500."""
    from flask import has_request_context, request

    from embedding_app.api.deadline import timed_out

    timeout = get_settings().timeout
    # gunicorn calls this from its SIGABRT handler, then exits the worker; raising here unwinds the
    # request instead, Flask renders the error, and the worker exits after sending it (alive is False).
    # Without a newer heartbeat the master's next check (within a second) would SIGKILL the worker before it
    # has sent the 503 and exited, logged as "Perhaps out of memory?". This one leaves it ABORT_GRACE seconds.
    beat = time.monotonic() - timeout + min(ABORT_GRACE, timeout)
    os.utime(worker.tmp.fileno(), (beat, beat))  # gunicorn's heartbeat is this file's mtime, in monotonic time
    if has_request_context():
        worker.log.error("%s %s took longer than the %ds timeout: answering 503, then replacing this worker",
                         request.method, request.path, timeout)
        raise timed_out(timeout)


def worker_exit(server, worker) -> None:
    """A worker stopping normally skips the interpreter's teardown, which spends seconds in torch's native code."""
    # Until it is gone the master counts it as alive (and after a timeout kills it as if out of memory);
    # nothing is left to save: metrics are in shared memory maps, and the logs are flushed here.
    stopping = sys.exc_info()[1]
    if os.getpid() == worker.pid and isinstance(stopping, SystemExit) and stopping.code in (0, None):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
