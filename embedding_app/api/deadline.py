"""A request's time budget: EMBEDDING_SERVER_TIMEOUT from when the proxy passed it on, queue time included.

Admission refuses work that cannot finish within the budget before computing any of it; between forwards the
worker tells gunicorn it is alive, stops when the budget is spent, and stops when the client has gone.
"""

from __future__ import annotations

import logging
import socket
import time

from embedding_app.runtime import backlog, status_board
from embedding_app.runtime.speed import seconds_per_token

from .errors import ApiError

log = logging.getLogger(__name__)
# The proxy's start time ("t=<seconds since the epoch>", nginx's $msec); without a proxy: when the worker took it.
START_HEADER = "X-Request-Start"
# Estimates are from the worker's recent speed, which moves with the load: a margin before refusing.
ESTIMATE_MARGIN = 1.25


def parse_start(header: str | None, now: float) -> float:
    """The start time a proxy sent (never later than now), or now."""
    try:
        return min(now, float((header or "").removeprefix("t=")))
    except ValueError:
        return now


def timed_out(timeout: int) -> ApiError:
    """The 503 for a request stopped at the time limit; the same request would time out again, so no retry."""
    return ApiError(503, f"The request took longer than this server's time limit of {timeout}s "
                         "(EMBEDDING_SERVER_TIMEOUT) and was stopped; send fewer or shorter inputs per request",
                    code="timeout", headers={"x-should-retry": "false"})


class Budget:
    """The time left for one request, and the checks made before and between its forwards."""

    def __init__(self, started: float, timeout: int, sock: socket.socket | None = None):
        self.started = started
        self.timeout = timeout
        self.sock = sock

    def left(self) -> float:
        """Seconds until the deadline (negative once past it)."""
        return self.started + self.timeout - time.time()

    def check_queued(self) -> None:
        """Before reading a request: refuse one that waited past its deadline (its client got, or gets, a timeout)."""
        if self.left() <= 0:
            raise self._overloaded(f"The request waited {time.time() - self.started:.0f}s for a free worker, "
                                   f"past this server's time limit of {self.timeout}s; it was not computed")

    def admit(self, model: str, tokens: int, max_tokens: int) -> None:
        """Refuse, before computing, work that cannot finish in time: 400 if it never could, else 503 to retry."""
        per_token = seconds_per_token(model)
        if per_token is None:
            return
        estimate = tokens * per_token * ESTIMATE_MARGIN
        if estimate > self.timeout:
            limit = min(max_tokens, int(self.timeout / per_token / ESTIMATE_MARGIN))
            raise ApiError(400, f"The request has {tokens} tokens; at this server's measured speed (~"
                                f"{1 / per_token:.0f} tokens/s) it would take ~{estimate:.0f}s, more than its time "
                                f"limit of {self.timeout}s (EMBEDDING_SERVER_TIMEOUT): send at most ~{limit} tokens "
                                "per request", param="input", code="too_many_tokens")
        if estimate > self.left():
            raise self._overloaded(f"The request ({tokens} tokens, ~{estimate:.0f}s) cannot finish before its "
                                   f"deadline after waiting {time.time() - self.started:.0f}s for a free worker; "
                                   "it was not computed")

    def between_forwards(self) -> None:
        """Before each forward: heartbeat for gunicorn; stop past the deadline or when the client has gone."""
        status_board.heartbeat()
        if self.left() <= 0:
            raise timed_out(self.timeout)
        if self.sock is not None and _closed(self.sock):
            log.info("the client closed the connection: stopped computing its answer")
            raise ApiError(499, "The client closed the connection before the answer was ready", code="client_closed")

    def _overloaded(self, message: str) -> ApiError:
        board, waiting = status_board.board(), backlog.queued(status_board.listeners())
        wait = backlog.expected_wait(status_board.read(board), waiting, self.timeout) if board else 1.0
        return ApiError(503, f"{message}; retry after the Retry-After delay", code="server_overloaded",
                        headers={"Retry-After": str(backlog.retry_after(wait))})


def _closed(sock: socket.socket) -> bool:
    """Whether the peer has closed the connection (an orderly close or a reset); waits for nothing."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
