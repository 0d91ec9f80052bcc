"""THREADS_PER_WORKER=auto: the workers of one server share its cores, each taking its part as it starts a forward.

A shared-memory board, one byte per worker slot, is made by the master before it forks (no torch there) and
inherited by every worker. A worker's byte is 1 while it answers an embeddings request; before each forward the
worker sets its torch threads to cores // busy workers. The master hands out a slot per worker (pre_fork, status_board.assign_slot: the same slot on both boards) and
clears it when the worker has exited (child_exit), so a worker killed mid-request cannot hold its share forever.
"""

from __future__ import annotations

import logging
import mmap
import os
from contextlib import contextmanager

log = logging.getLogger(__name__)
_board: mmap.mmap | None = None  # set in a worker of an auto server; None: fixed threads, nothing to do
_slot = 0
_cores = 1


def available_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may use: its CPU affinity (taskset, cpusets), capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0))
    try:  # a container's --cpus or a pod's cpu limit is a quota: the affinity still lists every core of the host
        with open(cpu_max) as limits:
            quota, period = limits.read().split()
        return cores if quota == "max" else max(1, min(cores, int(quota) // int(period)))
    except (OSError, ValueError):
        return cores


def oversubscription(workers: int, threads: int | None, cores: int) -> str | None:
    """A start-up warning when the workers' torch threads would outnumber the cores, else None."""
    if threads is None:  # auto: a busy worker takes cores // busy workers, at least 1
        if workers <= cores:
            return None
        return (f"EMBEDDING_SERVER_WORKERS={workers} on {cores} core(s): with every worker busy, {workers} torch "
                "threads share the cores; more workers than cores add memory and queueing, not throughput")
    if workers * threads <= cores:
        return None
    return (f"EMBEDDING_SERVER_WORKERS={workers} x EMBEDDING_SERVER_THREADS_PER_WORKER={threads} = "
            f"{workers * threads} torch threads on {cores} core(s): busy workers will contend for the cores "
            "(measured 0.30-0.45x on busy cores, BENCHMARKS.md); use auto, or workers x threads <= cores")


def create_board(workers: int) -> mmap.mmap:
    """A zeroed shared board with room for twice the workers (rolling reloads and TTIN add workers for a while)."""
    return mmap.mmap(-1, 2 * workers + 1)  # anonymous and MAP_SHARED: forked workers write to the same page


def free_slot(board: mmap.mmap, slot: int | None) -> None:
    """Mark an exited worker's slot idle (in the master): it may have died inside a request."""
    if slot is not None:
        board[slot] = 0


def attach(board: mmap.mmap, slot: int | None) -> int:
    """In a new worker: take part in the sharing from `slot`; returns the threads to start with (all cores)."""
    global _board, _slot, _cores
    _cores = available_cores()
    if slot is None:  # more workers than slots: this one stays at one thread rather than oversubscribe
        log.warning("pid %d: no free thread-budget slot; running with 1 torch thread", os.getpid())
        return 1
    _board, _slot = board, slot
    return _cores


@contextmanager
def busy():
    """Count this worker as busy while the block runs (an embeddings request); no-op with fixed threads."""
    if _board is None:
        yield
        return
    _board[_slot] = 1
    try:
        yield
    finally:
        _board[_slot] = 0


def share() -> int | None:
    """This worker's part of the cores now (at least 1), or None with fixed threads."""
    if _board is None:
        return None
    return max(1, _cores // max(1, _board[:].count(1)))


def follow_load() -> None:
    """Before a forward: set this worker's torch threads to its share of the cores (auto only)."""
    threads = share()
    if threads is None:
        return
    # Imported here: the master imports this module, and must neither load torch nor create metric files.
    import torch

    from . import metrics

    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        metrics.torch_threads(threads)
        log.debug("pid %d: %d torch thread(s) (%d cores, busy workers: %d)", os.getpid(), threads, _cores,
                  _board[:].count(1))
