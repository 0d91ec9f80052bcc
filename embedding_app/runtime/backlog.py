"""The real backlog of a server: requests waiting in its listening socket and in its workers, and the wait it means."""

from __future__ import annotations

import math
import socket
import struct
import time

from .status_board import WorkerState

# struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked; for a listening socket
# Linux reports its accept queue's length as tcpi_unacked.
_TCP_INFO_UNACKED = struct.Struct("<8x4xIII I")
RETRY_AFTER_MAX = 60  # the OpenAI SDK ignores longer Retry-After values and falls back to its own backoff


def queued(listeners) -> int:
    """Connections accepted by the kernel that no worker has taken yet, summed over the listening sockets."""
    total = 0
    for listener in listeners:
        try:
            info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_UNACKED.size)
            total += _TCP_INFO_UNACKED.unpack(info)[3]
        except OSError:  # a unix socket has no TCP_INFO: its queue is unknown, counted as empty
            pass
    return total


def expected_wait(states: list[WorkerState], waiting: int, timeout: float) -> float:
    """Seconds until a request sent now would start: the busy workers' rest, then the queue ahead, spread over workers."""
    ready = [state for state in states if state.ready]
    if not ready:
        return float(timeout)
    # A worker that has not answered any request yet is assumed to take a second per request.
    mean = sum(state.request_seconds or 1.0 for state in ready) / len(ready)
    now = time.time()
    remaining = sum(max(0.0, mean - (now - state.busy_since)) for state in ready if state.busy)
    return (remaining + waiting * mean) / len(ready)


def retry_after(wait: float) -> int:
    """The Retry-After seconds for an expected wait: at least 1, at most what the OpenAI SDK honours."""
    return max(1, min(RETRY_AFTER_MAX, math.ceil(wait)))
