"""THREADS_PER_WORKER as one object, made once from the settings: a fixed count, or auto (the cores, shared).

FixedThreads: every worker runs that many torch threads whatever the others do; every step is a no-op.
SharedCores (auto): a shared-memory board, one byte per worker slot, is made by the master before it forks (no torch
there) and inherited by every worker. A worker's byte is 1 while it answers an embeddings request; before each forward
the worker sets its torch threads to cores // busy workers. The master hands out a slot per worker (pre_fork,
status_board.assign_slot: the same slot on both boards) and frees it when the worker has exited (child_exit), so a
worker killed mid-request cannot hold its share forever.
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager

from embedding_app.config.settings import Settings

log = logging.getLogger(__name__)


def available_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may use: its CPU affinity (taskset, cpusets), capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0))
    try:  # a container's --cpus or a pod's cpu limit is a quota: the affinity still lists every core of the host
        with open(cpu_max) as limits:
            quota, period = limits.read().split()
        return cores if quota == "max" else max(1, min(cores, int(quota) // int(period)))
    except (OSError, ValueError):
        return cores


class ThreadBudget:
    """What both kinds share: the workers and cores it was made for; the steps only auto needs do nothing here."""

    tokenizer_threads: int  # the Rust tokenizer's pool size
    summary: str  # how the start-up log line describes the threads

    def __init__(self, workers: int, cores: int | None = None):
        self.workers = workers
        self.cores = cores or available_cores()

    def share(self) -> int:
        """The torch threads this worker should run now (at least 1)."""
        raise NotImplementedError

    def busy_share(self) -> int:
        """The torch threads this worker runs while every worker is busy: where throughput is decided."""
        raise NotImplementedError

    def free_slot(self, slot: int | None) -> bool:
        """In the master: mark an exited worker's slot idle (it may have died inside a request); True if one was."""
        return False

    def attach(self, slot: int | None) -> None:
        """In a new worker: take part from `slot` (None: the board was full); current() returns this budget."""
        global _current
        _current = self

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Count this worker as busy while the block runs (an embeddings request)."""
        yield

    def follow_load(self) -> None:
        """Before a forward: set this worker's torch threads to its share of the cores."""

    def environment(self, environ) -> dict[str, str]:
        """The thread settings a process adds to its environment before torch and the tokenizer load."""
        # The Rust tokenizer's thread pool defaults to every core; held to the worker's fixed thread budget (one
        # thread under auto: its pool size is fixed at first use) it cannot steal the cores other workers' torch
        # threads run on.
        return {"RAYON_NUM_THREADS": str(self.tokenizer_threads),
                "TOKENIZERS_PARALLELISM": "true" if self.tokenizer_threads > 1 else "false",
                **self.openmp_waits(environ)}

    def openmp_waits(self, environ) -> dict[str, str]:
        """The OpenMP wait settings a worker adds to its environment before torch loads."""
        return {}

    def oversubscription(self) -> str | None:
        """A start-up warning when the workers' torch threads would outnumber the cores, else None."""
        raise NotImplementedError


class FixedThreads(ThreadBudget):
    """THREADS_PER_WORKER=<n>: n torch threads (and tokenizer threads) in every worker, nothing shared."""

    def __init__(self, workers: int, threads: int, cores: int | None = None):
        super().__init__(workers, cores)
        self.threads = threads
        self.tokenizer_threads = threads
        self.summary = ""

    def share(self) -> int:
        """The fixed count."""
        return self.threads

    def busy_share(self) -> int:
        """The fixed count."""
        return self.threads

    def oversubscription(self) -> str | None:
        """A start-up warning when the workers' torch threads would outnumber the cores, else None."""
        if self.workers * self.threads <= self.cores:
            return None
        return (f"EMBEDDING_SERVER_WORKERS={self.workers} x EMBEDDING_SERVER_THREADS_PER_WORKER={self.threads} = "
                f"{self.workers * self.threads} torch threads on {self.cores} core(s): busy workers will contend for "
                "the cores (measured 0.30-0.45x on busy cores, BENCHMARKS.md); use auto, or workers x threads <= cores")


class SharedCores(ThreadBudget):
    """THREADS_PER_WORKER=auto: each busy worker runs cores // busy workers torch threads, following the load."""

    # The Rust tokenizer's thread pool defaults to every core and its size is fixed at first use: one thread here,
    # so that it cannot steal the cores other workers' torch threads run on.
    tokenizer_threads = 1
    summary = " while alone (auto: the busy workers share the cores)"

    def __init__(self, workers: int, cores: int | None = None):
        super().__init__(workers, cores)
        # Room for twice the workers (rolling reloads and TTIN add workers for a while); anonymous and MAP_SHARED:
        # forked workers write to the same page.
        self.board = mmap.mmap(-1, 2 * workers + 1)
        self.slot: int | None = None  # this worker's; None in the master, outside gunicorn or when the board was full

    def share(self) -> int:
        """cores // busy workers (at least 1); every core outside gunicorn; 1 for a worker without a slot."""
        if self.slot is None:
            return self.cores
        return max(1, self.cores // max(1, self.board[:].count(1)))

    def busy_share(self) -> int:
        """cores // workers (at least 1); 1 for a worker without a slot."""
        return 1 if self.slot is None else max(1, self.cores // self.workers)

    def free_slot(self, slot: int | None) -> bool:
        """In the master: mark an exited worker's slot idle (it may have died inside a request); True if one was."""
        if slot is None:
            return False
        self.board[slot] = 0
        return True

    def attach(self, slot: int | None) -> None:
        """In a new worker: take part in the sharing from `slot`; current() returns this budget."""
        super().attach(slot)
        self.slot = slot
        if slot is None:  # more workers than slots: this one stays at one thread rather than oversubscribe
            log.warning("pid %d: no free thread-budget slot; running with 1 torch thread", os.getpid())
            self.cores = 1

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Count this worker as busy while the block runs (an embeddings request)."""
        if self.slot is None:
            yield
            return
        self.board[self.slot] = 1
        try:
            yield
        finally:
            self.board[self.slot] = 0

    def follow_load(self) -> None:
        """Before a forward: set this worker's torch threads to its share (workers started or finished since)."""
        if self.slot is None:
            return
        threads = self.share()
        # Imported here: the master imports this module, and must neither load torch nor create metric files.
        import torch

        from . import metrics

        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            metrics.torch_threads(threads)
            log.debug("pid %d: %d torch thread(s) (%d cores, busy workers: %d)", os.getpid(), threads, self.cores,
                      self.board[:].count(1))

    def openmp_waits(self, environ) -> dict[str, str]:
        """Brief OpenMP spinning, then sleep (none if the operator set either key)."""
        # A worker's threads follow the load, so for a moment (a forward begun before the other worker started)
        # they outnumber the cores. libgomp's waiting threads spin for ~3 ms by default and take the cores from the
        # threads doing the work (0.30-0.45x on busy cores); sleeping at once cost a lone request 11 %; a 10 000-spin
        # wait cost neither (BENCHMARKS.md, "Thread budget"). libgomp (torch's) takes the spin count over the
        # policy; other OpenMP runtimes take the policy. An operator's own value of either wins.
        if {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & environ.keys():
            return {}
        return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}

    def oversubscription(self) -> str | None:
        """A start-up warning when there are more workers than cores, else None."""
        if self.workers <= self.cores:  # a busy worker takes cores // busy workers, at least 1
            return None
        return (f"EMBEDDING_SERVER_WORKERS={self.workers} on {self.cores} core(s): with every worker busy, "
                f"{self.workers} torch threads share the cores; more workers than cores add memory and queueing, "
                "not throughput")


def for_settings(settings: Settings, cores: int | None = None) -> FixedThreads | SharedCores:
    """The budget THREADS_PER_WORKER asks for (None: auto) for the server's workers on `cores` (default: ours)."""
    if settings.threads_per_worker is None:
        return SharedCores(settings.workers, cores)
    return FixedThreads(settings.workers, settings.threads_per_worker, cores)


_current: ThreadBudget = FixedThreads(1, 1, cores=1)  # no-op until a worker attaches its budget


def current() -> ThreadBudget:
    """This worker's budget (a no-op one outside gunicorn)."""
    return _current
