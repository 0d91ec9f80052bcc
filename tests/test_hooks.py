"""gunicorn's hooks, imported from the package and run with a fake server and worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from embedding_app.config.settings import Settings
from embedding_app.runtime import status_board
from embedding_app.runtime.thread_budget import FixedThreads, SharedCores
from embedding_app.serving import hooks
from embedding_app.serving.startup import (
    METRICS_PREFIX,
    check_port_free,
    remove_dead_masters_metrics,
)

ROOT = Path(__file__).resolve().parents[1]


class Log:
    """gunicorn's logger, keeping what was logged."""

    def __init__(self):
        self.lines: list[str] = []

    def info(self, message, *args):
        self.lines.append(message % args)

    warning = error = info


def fake_server(tmp_path, budget) -> SimpleNamespace:
    """The arbiter's attributes that on_starting would have set."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    return SimpleNamespace(log=Log(), metrics_dir=str(metrics_dir), status_board=status_board.create(2),
                           thread_budget=budget, WORKERS={})


def test_the_master_config_imports_neither_torch_nor_prometheus_and_names_the_package_hooks():
    # GLIBC_TUNABLES set: no huge-pages restart of the interpreter that loads the file.
    script = ("import runpy, sys; conf = runpy.run_path('gunicorn.conf.py'); "
              "from embedding_app.serving import hooks, worker_hooks; "
              "assert conf['on_starting'] is hooks.on_starting and conf['post_fork'] is worker_hooks.post_fork; "
              "assert not {'torch', 'prometheus_client'} & set(sys.modules), 'imported in the master'")
    environ = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", "MODEL_NAME": ""}
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ, check=True, timeout=120)


def test_a_port_in_use_stops_the_start_naming_the_setting():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(SystemExit, match=f"port {port} on 127.0.0.1 is already in use .*EMBEDDING_SERVER_HEALTH"):
            check_port_free("127.0.0.1", port, "EMBEDDING_SERVER_HEALTH_PORT")


def test_a_free_port_passes():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_port_free("127.0.0.1", port)


def test_only_the_metrics_of_masters_that_are_gone_are_removed(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead, alive = tmp_path / f"{METRICS_PREFIX}{gone.pid}-x1", tmp_path / f"{METRICS_PREFIX}{os.getpid()}-x2"
    odd, other = tmp_path / f"{METRICS_PREFIX}abc-x3", tmp_path / "unrelated-1-x"
    for directory in (dead, alive, odd, other):
        directory.mkdir()
    remove_dead_masters_metrics(str(tmp_path))
    assert not dead.exists() and alive.exists() and odd.exists() and other.exists()


def test_pre_fork_gives_the_lowest_free_slot(tmp_path):
    server = fake_server(tmp_path, FixedThreads(2, 1, cores=2))
    server.WORKERS = {1: SimpleNamespace(slot=0), 2: SimpleNamespace(slot=2)}
    worker = SimpleNamespace()
    hooks.pre_fork(server, worker)
    assert worker.slot == 1


def test_child_exit_frees_the_workers_slots(tmp_path, monkeypatch):
    for name in ("_board", "_slot", "_heartbeat", "_listeners"):  # this process's own, back after the test
        monkeypatch.setattr(status_board, name, getattr(status_board, name))
    budget = SharedCores(2, cores=4)
    server = fake_server(tmp_path, budget)
    budget.board[1] = 1  # it died inside a request
    status_board.attach(server.status_board, 1, 4321, lambda: None)
    status_board.start_request()
    hooks.child_exit(server, SimpleNamespace(pid=4321, slot=1, aborted=False))
    assert budget.board[1] == 0 and status_board.read(server.status_board) == []
    assert server.log.lines == ["worker 4321 exited: thread-budget slot 1 is free"]


def test_child_exit_with_fixed_threads_has_no_slot_to_free(tmp_path, monkeypatch):
    monkeypatch.setattr(hooks, "get_settings", lambda: Settings(timeout=7))
    server = fake_server(tmp_path, FixedThreads(2, 1, cores=2))
    hooks.child_exit(server, SimpleNamespace(pid=4321, slot=0, aborted=True))
    [line] = server.log.lines
    assert "worker 4321 stopped by the 7s timeout" in line


def test_on_exit_removes_the_metrics_directory(tmp_path):
    server = fake_server(tmp_path, FixedThreads(2, 1, cores=2))
    hooks.on_exit(server)
    assert not os.path.exists(server.metrics_dir)
    hooks.on_exit(SimpleNamespace())  # a start that failed before the directory was made
