"""gunicorn settings, taken from embedding_app.config.settings (.env and the environment); the hooks live in
embedding_app/serving/ (hooks.py in the master, worker_hooks.py in each worker)."""

import os
import sys

from embedding_app.config.settings import SettingsError, get_settings
from embedding_app.runtime.allocator import with_huge_pages
from embedding_app.serving import hooks, worker_hooks

# Large tensors on transparent huge pages (embedding_app/runtime/allocator.py): 1.14-1.33x faster forwards. glibc takes the
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
# Torch must never run in the master: OpenMP state does not survive fork (workers would hang). The master imports
# torch and transformers once (when_ready, embedding_app/serving/preload.py) but runs nothing; the app itself is
# imported in each worker, so a rolling reload brings new server code.
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
logger_class = "embedding_app.serving.access_log.QuietProbesLogger"


# --- Server hooks, in the order gunicorn calls them. The master runs on_starting, when_ready, on_reload, pre_fork,
# child_exit and on_exit; post_fork, post_worker_init, worker_abort and worker_exit run in each worker.
on_starting = hooks.on_starting
when_ready = hooks.when_ready
on_reload = hooks.on_reload
pre_fork = hooks.pre_fork
post_fork = worker_hooks.post_fork
post_worker_init = worker_hooks.post_worker_init
worker_abort = worker_hooks.worker_abort
worker_exit = worker_hooks.worker_exit
child_exit = hooks.child_exit
on_exit = hooks.on_exit
