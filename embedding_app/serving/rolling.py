"""SIGHUP without a gap in service: replace gunicorn's workers one at a time, each once its successor is ready."""

from __future__ import annotations

import queue
import signal
import time

# The signals that stop gunicorn. While the master waits here it handles no signals; a stop request ends the roll
# so it is honoured promptly.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# Loading a large model on a busy machine can take minutes; the request timeout is unrelated to it.
READY_SECONDS = 600


def _stop_requested(arbiter) -> bool:
    """Whether a stop signal waits in the arbiter's queue (looked at, then put back in order)."""
    pending = []
    while True:
        try:
            pending.append(arbiter.SIG_QUEUE.get_nowait())
        except queue.Empty:
            break
    for sig in pending:
        arbiter.SIG_QUEUE.put_nowait(sig)
    return any(sig in STOP_SIGNALS for sig in pending)


def _wait(arbiter, done, seconds: float) -> bool:
    """Reap exited children until done() or a stop signal or the deadline; returns done()."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline and not _stop_requested(arbiter):
        arbiter.reap_workers()  # may raise HaltServer if the new worker cannot boot, as at start-up
        time.sleep(0.1)
    return done()


def _spawn_ready_worker(arbiter) -> bool:
    """Fork one worker and wait until it serves: its first heartbeat comes after the model has loaded."""
    pid = arbiter.spawn_worker()
    worker = arbiter.WORKERS[pid]
    forked = worker.tmp.last_update()

    def ready() -> bool:
        return pid in arbiter.WORKERS and worker.tmp.last_update() != forked

    _wait(arbiter, lambda: ready() or pid not in arbiter.WORKERS, READY_SECONDS)
    return ready()


def rolling_reload(arbiter) -> None:
    """Replace every worker, oldest first: fork a successor, wait until it is ready, then stop the old one."""
    arbiter.log.reopen_files()
    old = sorted(arbiter.WORKERS, key=lambda pid: arbiter.WORKERS[pid].age)
    for number, pid in enumerate(old, 1):
        if pid not in arbiter.WORKERS:
            continue
        if not _spawn_ready_worker(arbiter):
            arbiter.log.error("reload stopped: a new worker did not become ready; the old workers keep serving")
            return
        arbiter.kill_worker(pid, signal.SIGTERM)
        _wait(arbiter, lambda pid=pid: pid not in arbiter.WORKERS, arbiter.cfg.graceful_timeout)
        arbiter.log.info("reload: worker %d of %d replaced (pid %s stopped)", number, len(old), pid)
