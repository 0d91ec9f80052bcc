"""gunicorn's server hooks that run in the master: start-up, rolling reload, worker slots, exits.

Flask, prometheus_client and torch are imported inside the hooks, never at the top of this module (gunicorn.conf.py
imports it in the master): prometheus_client chooses multiprocess mode when first imported, so
PROMETHEUS_MULTIPROC_DIR must be set first; torch is imported in when_ready (preload.py) but never run here.
"""

from __future__ import annotations

import os
import shutil

from embedding_app.config.settings import get_settings
from embedding_app.runtime import status_board, thread_budget

from . import preload, startup


def on_starting(server) -> None:
    """Check the port, resolve (for a Hub id, download) every model once and make the metrics directory."""
    # Kept on the arbiter, not in a module: SIGHUP keeps the arbiter (and the cached settings), so
    # reloaded workers get the same model and metrics without resolving anything again.
    settings = get_settings()
    if not server.master_pid:  # a master started by USR2 inherits the bound socket
        startup.check_port_free(settings.host, settings.port)
        startup.check_port_free(settings.host, settings.health_port, "EMBEDDING_SERVER_HEALTH_PORT")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    startup.remove_dead_masters_metrics(server.cfg.worker_tmp_dir)
    server.model_sources = startup.resolve_sources(settings, server.log)
    # The workers share the cores through this object's board under auto; with a fixed count it does nothing.
    server.thread_budget = thread_budget.for_settings(settings)
    startup.log_configuration(settings, server.thread_budget.oversubscription(), server.log)
    # Made last, so that no failure above leaves it behind; on tmpfs because every request writes to it.
    server.metrics_dir = startup.make_metrics_dir(server.cfg.worker_tmp_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = server.metrics_dir
    # Each worker's state (loaded, busy, request times), for the health responder and admission.
    server.status_board = status_board.create(settings.workers)
    # SIGHUP runs on_reload alone: a rolling replacement instead of gunicorn's all-at-once reload.
    server.reload = lambda: on_reload(server)


def when_ready(server) -> None:
    """Answer /health, /livez, /readyz from a master thread (EMBEDDING_SERVER_HEALTH_PORT); then preload libraries."""
    from . import health_server

    settings = get_settings()
    if not getattr(server, "health_responder", False):  # once per master, not again on reloads
        health_server.start(server, settings.host, settings.health_port)
        server.health_responder = True
    server.log.info("health, liveness and readiness on %s:%d (/health, /livez, /readyz)", settings.host,
                    settings.health_port)
    # After the responder starts, so that /livez answers during these seconds (and /readyz says the workers are not
    # loaded yet); after PROMETHEUS_MULTIPROC_DIR is set, which a library importing prometheus_client must see.
    preload.preload(settings, server.model_sources, server.thread_budget, server.log)


def on_reload(server) -> None:
    """Replace the workers one at a time, each old one stopped only once its successor has loaded the model."""
    from .rolling import rolling_reload

    rolling_reload(server)


def pre_fork(server, worker) -> None:
    """Give the worker about to fork its slot of the status board (and of the thread budget's under auto)."""
    worker.slot = status_board.assign_slot(server.status_board, server.WORKERS.values())


def child_exit(server, worker) -> None:
    """Say why a worker stopped when it was the timeout; fold its metrics files; free its thread-budget slot."""
    from .metrics_files import fold_dead_worker

    # gunicorn logs a worker it had to SIGKILL as "Perhaps out of memory?"; say when the timeout stopped it.
    if worker.aborted:  # the master sent SIGABRT: the worker's heartbeat was older than the timeout
        server.log.warning("worker %s stopped by the %ds timeout (EMBEDDING_SERVER_TIMEOUT): a request ran longer, "
                           "or the worker hung; a new worker replaces it", worker.pid, get_settings().timeout)
    fold_dead_worker(worker.pid, server.metrics_dir)
    status_board.clear(server.status_board, worker.slot)  # it may have died inside a request, marked busy
    if server.thread_budget.free_slot(worker.slot):
        server.log.info("worker %s exited: thread-budget slot %s is free", worker.pid, worker.slot)


def on_exit(server) -> None:
    """Remove the metrics directory (on every exit after on_starting made it, failed starts included)."""
    shutil.rmtree(getattr(server, "metrics_dir", ""), ignore_errors=True)
