"""gunicorn's sync worker, answering the HTTP errors gunicorn handles itself in the OpenAI JSON shape, closing
answered connections without waiting on the client, and stopping when the master dies."""

from __future__ import annotations

import ctypes
import signal
import socket

from gunicorn import util
from gunicorn.http.body import LengthReader
from gunicorn.workers.sync import SyncWorker

from embedding_app.api.error_catalogue import BY_STATUS, CATALOGUE
from embedding_app.api.errors import error_body


def write_json_error(sock, status: int, reason: str, message: str) -> None:
    """Send an OpenAI-shaped error and close, where gunicorn would send an HTML page."""
    if status == 501:
        # gunicorn answers 501 only for a Transfer-Encoding it does not know (`xchunked`): a malformed
        # request, the client's fault, so a 4xx that clients do not retry, as nginx answers it.
        status, reason = 400, "Bad Request"
    code = BY_STATUS.get(status)
    body = error_body(status, message or (CATALOGUE[code].message if code else reason), code=code)
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def unread_data(sock) -> bool:
    """Whether the client sent bytes this worker has not read (a close would answer them with a reset)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False
    except (OSError, ValueError):  # ValueError: a TLS socket takes no flags; OSError: gone already
        return True


def read_whole(req) -> bool:
    """Whether the request's body was read to its end (a body of known length; chunked ones are not tracked)."""
    return req is not None and isinstance(req.body.reader, LengthReader) and req.body.reader.length == 0


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_the_master() -> None:
    """Ask Linux to send this process SIGTERM when its parent, the master, dies (kill -9 included)."""
    # gunicorn notices a dead master only between requests, after up to EMBEDDING_SERVER_TIMEOUT / 2 s of
    # waiting, and never while requests keep coming: meanwhile an orphan serves on. Elsewhere that check remains.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux
        pass


class JsonErrorSyncWorker(SyncWorker):
    """A sync worker whose own errors (431, 414, bad framing...) are JSON, closing read-whole requests at once."""

    request_read_whole = False  # set per request by handle_request: its body was read to the end

    def init_process(self) -> None:
        """Stop with the master; route gunicorn's error pages through write_json_error; run as a plain sync worker."""
        exit_with_the_master()  # a master already gone is caught by gunicorn's own check (ppid) in the loop
        # Worker.handle_error classifies the error, logs it and writes it through util.write_error: replacing
        # that one function in this process keeps gunicorn's status choices and logging, and only changes the body.
        util.write_error = write_json_error
        # gunicorn 27 closes every connection gracefully: it lingers up to 2 s for the client's FIN, so a client that
        # keeps its socket open after the answer held this worker 2 s per request (measured: 5 such requests, 8 s).
        # The linger only matters when unread request bytes would turn the close into a reset: kept for that case.
        linger = util.close_graceful
        util.close_graceful = lambda sock: util.close(sock) if self.nothing_unread(sock) else linger(sock)
        super().init_process()

    def nothing_unread(self, sock) -> bool:
        """Whether the last request was read to its end and the client sent nothing after it: close at once."""
        return self.request_read_whole and not unread_data(sock)

    def handle(self, listener, client, addr) -> None:
        """gunicorn's handling of one connection, noting whether its request was read whole."""
        self.request_read_whole = False
        super().handle(listener, client, addr)

    def handle_request(self, listener, req, client, addr) -> None:
        """gunicorn's answer to one request, then whether it was read whole (the close needs no linger then)."""
        super().handle_request(listener, req, client, addr)
        self.request_read_whole = read_whole(req)
