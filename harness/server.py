"""Start a real gunicorn server from the repo root on a free localhost port, for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import requests

ROOT = Path(__file__).resolve().parent.parent
READY_LINE = re.compile(r"ready ([\d.]+)s after fork")  # logged once per worker start (runtime/loading.py)


def server_environ() -> dict[str, str]:
    """This process's environment without the server's own settings, which a test's in-process get_settings() may
    have copied in from the checkout's .env: each server gets only the settings it is started with."""
    from embedding_app.config.settings import known_keys

    return {key: value for key, value in os.environ.items() if key not in known_keys()}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout: float, what: str) -> None:
    """Poll condition every 0.1 s; fail naming what did not happen in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process, in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class GunicornServer:
    """gunicorn wsgi:app with the given settings; stop() ends it, its log stays readable."""

    def __init__(self, log_path: Path, workers: int = 2, root: Path = ROOT, **env: str):
        self.root = root  # another checkout (e.g. an older commit) to compare against
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.health_port = free_port()
        self.health_url = f"http://127.0.0.1:{self.health_port}"
        self.workers = workers
        self.log_path = log_path
        self.env = {**server_environ(), "EMBEDDING_SERVER_HOST": "127.0.0.1", "EMBEDDING_SERVER_PORT": str(self.port),
                    "EMBEDDING_SERVER_HEALTH_PORT": str(self.health_port),
                    "EMBEDDING_SERVER_WORKERS": str(workers), "HF_HUB_OFFLINE": "1", **env}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120, wait: bool = True) -> GunicornServer:
        """Launch gunicorn and (unless wait is False) wait until every worker has loaded its models."""
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 - gunicorn writes it until stop() closes it
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=self.root, env=self.env,
                                        stdout=self.log_file, stderr=subprocess.STDOUT)
        if not wait:
            return self
        deadline = time.monotonic() + timeout
        while len(self.ready_seconds()) < self.workers:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.2)
        requests.get(f"{self.url}/health", timeout=30).raise_for_status()
        return self

    def log(self) -> str:
        """Everything gunicorn has written so far."""
        return self.log_path.read_text(errors="replace")

    def ready_seconds(self) -> list[float]:
        """Each worker start's seconds from fork to ready, in log order."""
        return [float(seconds) for seconds in READY_LINE.findall(self.log())]

    def worker_pids(self) -> list[int]:
        """The pids of the master's live worker processes."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True,
                             check=False).stdout  # none left: pgrep fails, the list is empty
        return [int(pid) for pid in out.split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the master and wait for it to exit; returns its exit code."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        return self.process.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
