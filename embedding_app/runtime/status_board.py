"""Each worker's state in shared memory: loaded, busy since when, how long its requests take.

The master makes the board before forking (no torch there) and gives each worker a slot (pre_fork), the same slot
the thread budget uses; the worker writes its record, and the master's health responder and any worker read them
all. The master clears a slot when its worker has exited, so a worker killed mid-request is not counted as busy.
"""

from __future__ import annotations

import mmap
import struct
import time
from collections.abc import Callable
from typing import NamedTuple

# pid, ready, busy, busy since (wall clock), mean seconds per request (moving average)
_RECORD = struct.Struct("<iBBxxdd")
_AVERAGE_WEIGHT = 0.2  # of the newest request in the moving average


class WorkerState(NamedTuple):
    """One worker's record."""

    pid: int
    ready: bool
    busy: bool
    busy_since: float
    request_seconds: float


_board: mmap.mmap | None = None  # in a worker: the inherited board and this worker's slot
_slot = 0
_heartbeat: Callable[[], None] = lambda: None
_listeners: list = []  # the server's listening sockets, whose queues are part of the backlog


def create(workers: int) -> mmap.mmap:
    """A zeroed board with room for twice the workers (rolling reloads and TTIN add workers for a while)."""
    return mmap.mmap(-1, (2 * workers + 1) * _RECORD.size)  # anonymous and MAP_SHARED: forked workers share it


def slots(board: mmap.mmap) -> int:
    """How many worker records the board holds."""
    return len(board) // _RECORD.size


def assign_slot(board: mmap.mmap, workers) -> int | None:
    """The lowest slot no live worker holds (in the master, before forking); None when the board is full."""
    held = {getattr(worker, "slot", None) for worker in workers}
    return next((slot for slot in range(slots(board)) if slot not in held), None)


def clear(board: mmap.mmap, slot: int | None) -> None:
    """Forget an exited worker's record (in the master): it may have died inside a request."""
    if slot is not None:
        _RECORD.pack_into(board, slot * _RECORD.size, 0, 0, 0, 0.0, 0.0)


def read(board: mmap.mmap) -> list[WorkerState]:
    """The records of every slot a worker holds."""
    states = (WorkerState(*_RECORD.unpack_from(board, slot * _RECORD.size)) for slot in range(slots(board)))
    return [state._replace(ready=bool(state.ready), busy=bool(state.busy)) for state in states if state.pid]


def attach(board: mmap.mmap, slot: int | None, pid: int, heartbeat: Callable[[], None], listeners=()) -> None:
    """In a new worker: write this worker's record from `slot`; heartbeat tells gunicorn the worker is alive."""
    global _board, _slot, _heartbeat, _listeners
    _heartbeat, _listeners = heartbeat, list(listeners)
    if slot is None:  # more workers than slots: this one serves, but the responder cannot see it
        return
    _board, _slot = board, slot
    _write(pid=pid)


def board() -> mmap.mmap | None:
    """The board this worker writes to (None outside gunicorn)."""
    return _board


def listeners() -> list:
    """The server's listening sockets (none outside gunicorn)."""
    return _listeners


def _write(**changes) -> None:
    if _board is not None:
        state = WorkerState(*_RECORD.unpack_from(_board, _slot * _RECORD.size))._replace(**changes)
        _RECORD.pack_into(_board, _slot * _RECORD.size, *state)


def mark_ready() -> None:
    """This worker has loaded its models and serves."""
    _write(ready=True)


def start_request() -> None:
    """This worker has started computing a request."""
    _write(busy=True, busy_since=time.time())


def finish_request(seconds: float | None) -> None:
    """This worker is idle again; its request took `seconds` (folded into the moving average; None: refused)."""
    if _board is None:
        return
    previous = read_own().request_seconds
    average = previous if seconds is None else seconds if not previous else (
        (1 - _AVERAGE_WEIGHT) * previous + _AVERAGE_WEIGHT * seconds)
    _write(busy=False, busy_since=0.0, request_seconds=average)


def read_own() -> WorkerState:
    """This worker's record."""
    return WorkerState(*_RECORD.unpack_from(_board, _slot * _RECORD.size))


def heartbeat() -> None:
    """Tell gunicorn's master this worker is alive (between forwards: its timeout is on this heartbeat)."""
    _heartbeat()
