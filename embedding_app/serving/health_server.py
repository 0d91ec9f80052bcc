"""Health, liveness and readiness answered by a thread of gunicorn's master, on its own port: never behind a busy worker.

A sync worker computing a long request cannot answer a probe, and probes queued behind requests made healthy
servers look dead. The master always answers: from gunicorn's own worker heartbeats (which busy workers renew
between forwards), the shared status board (loaded, busy, request times) and the listening socket's queue.
The master forks workers while this thread runs, and a lock the thread holds at a fork stays held forever in the
child. So the thread never logs or prints (stdio locks), never resolves names, and imports nothing once workers
exist: start() answers one request of each kind, before the first fork, so every lazy import is done.
"""

from __future__ import annotations

import http.client
import os
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from embedding_app.runtime import backlog, status_board

HEALTH_FILE = "health.json"  # in the metrics directory: the models' description, written by the first ready worker


def write_health(directory: str, body: dict) -> None:
    """Store /health's description of the models (in a worker, once loaded); atomically, for the master to read."""
    path = os.path.join(directory, HEALTH_FILE)
    with open(f"{path}.{os.getpid()}", "wb") as out:
        out.write(orjson.dumps(body))
    os.replace(f"{path}.{os.getpid()}", path)


def worker_counts(arbiter) -> dict[str, int]:
    """Live workers (fresh gunicorn heartbeat), those loaded, and those computing a request."""
    states = {state.pid: state for state in status_board.read(arbiter.status_board)}
    alive = ready = busy = 0
    for worker in list(arbiter.WORKERS.values()):
        try:
            fresh = time.monotonic() - worker.tmp.last_update() <= arbiter.timeout
        except (OSError, ValueError):  # its heartbeat file was just closed: it is exiting
            continue
        state = states.get(worker.pid)
        alive += fresh
        ready += fresh and state is not None and state.ready
        busy += fresh and state is not None and state.busy
    return {"alive": alive, "ready": ready, "busy": busy}


def expected_wait(arbiter) -> tuple[float, int]:
    """The expected wait for a request sent now, and how many wait in the listening socket."""
    waiting = backlog.queued(arbiter.LISTENERS)
    return backlog.expected_wait(status_board.read(arbiter.status_board), waiting, arbiter.timeout), waiting


class _Handler(BaseHTTPRequestHandler):
    timeout = 5  # a client that stalls holds only its own thread, and not for long
    arbiter = None

    def do_GET(self) -> None:
        route = {"/livez": self._livez, "/readyz": self._readyz, "/health": self._health,
                 "/overloaded": self._overloaded}.get(self.path.split("?")[0])
        if route is None:
            self._send(404, {"error": {"message": f"Unknown route: GET {self.path}", "type": "invalid_request_error",
                                       "param": None, "code": "not_found"}})
        else:
            route()

    do_HEAD = do_GET

    def _livez(self) -> None:
        self._send(200, {"status": "alive", "workers": worker_counts(self.arbiter)})

    def _readyz(self) -> None:
        counts, (wait, waiting) = worker_counts(self.arbiter), expected_wait(self.arbiter)
        reason = ("no worker has its models loaded" if not counts["ready"] else
                  f"overloaded: a new request would wait ~{wait:.0f}s" if wait > self.arbiter.timeout else None)
        body = {"status": "not_ready" if reason else "ready", "workers": counts, "queued": waiting,
                "expected_wait_seconds": round(wait, 1)}
        self._send(503 if reason else 200, {**body, "reason": reason} if reason else body)

    def _health(self) -> None:
        counts = worker_counts(self.arbiter)
        try:
            with open(os.path.join(self.arbiter.metrics_dir, HEALTH_FILE), "rb") as stored:
                models = orjson.loads(stored.read())
        except OSError:
            models = {}
        if not counts["ready"] or not models:
            self._send(503, {"status": "unavailable", "workers": counts})
        else:
            self._send(200, {**models, "workers": counts})

    def _overloaded(self) -> None:
        wait, waiting = expected_wait(self.arbiter)
        message = (f"The server is busy: every worker is taken and {waiting} more requests are queued (~{wait:.0f}s "
                   "of work); retry after the Retry-After delay or send fewer requests at once")
        self._send(503, {"error": {"message": message, "type": "server_error", "param": None,
                                   "code": "server_overloaded"}},
                   {"Retry-After": str(backlog.retry_after(wait))})

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = orjson.dumps(body) + b"\n"
        self.send_response_only(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                            "Cache-Control": "no-store", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, *args) -> None:  # see the module docstring: never write to stdio here
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # HTTPServer's own looks up the host's name (socket.getfqdn): a DNS query, and imports, in this thread.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address) -> None:  # a client that went away: nothing to report
        pass


def start(arbiter, host: str, port: int) -> None:
    """Serve /livez, /readyz, /health and /overloaded on host:port from a daemon thread of the master."""
    handler = type("Handler", (_Handler,), {"arbiter": arbiter})
    server_class = type("Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
    try:
        server = server_class((host, port), handler)
    except OSError:  # a master started by USR2 runs beside the old one, which holds the port until it exits
        threading.Thread(target=_serve_when_free, args=(server_class, host, port, handler), daemon=True).start()
        return
    threading.Thread(target=server.serve_forever, name="health-responder", daemon=True).start()
    _warm_up(host, port)


def _serve_when_free(server_class, host: str, port: int, handler) -> None:
    while True:
        try:
            server = server_class((host, port), handler)
            break
        except OSError:
            time.sleep(1)
    server.serve_forever()


def _warm_up(host: str, port: int) -> None:
    """Answer each route once (no worker exists yet), so that the thread imports nothing after the first fork."""
    local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    for path in ("/livez", "/readyz", "/health", "/overloaded", "/unknown"):
        connection = http.client.HTTPConnection(local, port, timeout=5)
        try:
            connection.request("GET", path)
            connection.getresponse().read()
        except OSError:
            pass
        finally:
            connection.close()
