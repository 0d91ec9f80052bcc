"""THREADS_PER_WORKER: the budget object's slots and shares; and auto on real gunicorn: a lone request gets every core,
busy workers share them, a killed worker's share comes back, and embeddings do not depend on the share."""

from __future__ import annotations

import copy
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from embedding_app.config.settings import Settings
from embedding_app.runtime import thread_budget
from embedding_app.runtime.thread_budget import (
    FixedThreads,
    SharedCores,
    available_cores,
    for_settings,
)
from harness.server import GunicornServer, wait_until

from .test_metrics import scrape

CORES = available_cores()
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="sharing cores needs at least 2")
SHARED = re.compile(rf"\[(\d+)\] \[DEBUG\] pid \d+: {CORES // 2} torch thread\(s\)")


@pytest.fixture
def attached(monkeypatch):
    """A forked worker's copy of the master's budget (the same board), attached from a slot; this process's own
    budget comes back afterwards."""
    monkeypatch.setattr(thread_budget, "_current", thread_budget.current())

    def attach(master, slot):
        worker = copy.copy(master)  # as fork leaves it: the same shared board
        worker.attach(slot)
        return worker
    return attach


@pytest.mark.parametrize("busy, share", [(0, 8), (1, 8), (2, 4), (3, 2)])
def test_busy_workers_split_the_cores(attached, busy, share):
    master = SharedCores(3, cores=8)
    workers = [attached(master, slot) for slot in range(3)]
    for worker in workers[:busy]:
        worker.board[worker.slot] = 1
    assert [worker.share() for worker in workers] == [share] * 3


def test_three_busy_workers_on_two_cores_get_one_thread_each(attached):
    master = SharedCores(3, cores=2)
    workers = [attached(master, slot) for slot in range(3)]
    for worker in workers:
        worker.board[worker.slot] = 1
    assert [worker.share() for worker in workers] == [1, 1, 1]


@pytest.mark.parametrize("workers, cores, share", [(2, 8, 4), (3, 8, 2), (3, 2, 1), (1, 2, 2)])
def test_the_probe_runs_at_the_share_of_a_worker_when_all_are_busy(attached, workers, cores, share):
    worker = attached(SharedCores(workers, cores=cores), 0)
    assert worker.share() == cores and worker.busy_share() == share  # alone now; the probe times the busy share
    assert attached(SharedCores(workers, cores=cores), None).busy_share() == 1  # no slot: one thread
    assert FixedThreads(workers, 3, cores=cores).busy_share() == 3


def test_a_worker_is_busy_only_inside_the_block(attached):
    master = SharedCores(2, cores=4)
    budget = attached(master, 1)
    with budget.busy():
        assert master.board[:].count(1) == 1 and master.board[1] == 1 and budget.share() == 4
    assert master.board[:].count(1) == 0 and master.share() == 4  # the master has no slot: every core


def test_a_freed_slot_gives_its_share_back(attached):
    master = SharedCores(2, cores=4)
    worker, killed = attached(master, 0), attached(master, 1)
    with worker.busy():
        killed.board[killed.slot] = 1  # killed inside a request: its byte stays 1
        assert worker.share() == 2
        assert master.free_slot(1) and not master.free_slot(None)
        assert worker.share() == 4


def test_a_worker_without_a_slot_runs_one_thread_and_follows_nothing(attached):
    budget = attached(SharedCores(1, cores=8), None)
    with budget.busy():
        assert budget.board[:].count(1) == 0
    assert budget.share() == 1
    budget.follow_load()  # nothing to follow: no torch call needed


def test_before_a_forward_torch_follows_the_share(attached, monkeypatch):
    import torch

    from embedding_app.runtime import metrics

    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.setattr(metrics, "torch_threads", lambda count: None)
    master = SharedCores(2, cores=2 * torch.get_num_threads())
    budget, other = attached(master, 0), attached(master, 1)
    with budget.busy(), other.busy():
        budget.follow_load()
        assert threads == []  # half the cores: the torch threads it has now, nothing to change
    with budget.busy():
        budget.follow_load()
    assert threads == [2 * torch.get_num_threads()]  # alone: every core


def test_outside_gunicorn_auto_uses_every_core():
    assert SharedCores(2, cores=6).share() == 6


def test_fixed_threads_is_a_no_op(attached):
    budget = attached(FixedThreads(2, 3, cores=8), 0)
    assert thread_budget.current() is budget
    with budget.busy():
        assert budget.share() == 3
    assert not budget.free_slot(0)
    assert budget.tokenizer_threads == 3 and budget.summary == ""
    budget.follow_load()


def test_the_setting_picks_the_kind_once():
    assert isinstance(for_settings(Settings(threads_per_worker=None), 4), SharedCores)
    fixed = for_settings(Settings(workers=3, threads_per_worker=2), 4)
    assert isinstance(fixed, FixedThreads) and (fixed.workers, fixed.threads, fixed.cores) == (3, 2, 4)
    assert SharedCores(1, cores=4).tokenizer_threads == 1


@pytest.fixture(scope="module")
def auto_server(output_dir):
    """Two fp32 workers sharing the cores; 512-token forwards, so that a request of many texts runs many of them."""
    with GunicornServer(output_dir / "gunicorn-threads-auto.log", workers=2, MODEL_NAME="", QUANTIZE="false",
                        EMBEDDING_SERVER_THREADS_PER_WORKER="auto", BATCH_TOKENS="512", LOG_LEVEL="debug") as server:
        yield server


def embed(server, texts: list[str]) -> np.ndarray:
    response = requests.post(f"{server.url}/v1/embeddings", json={"input": texts}, timeout=300)
    response.raise_for_status()
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def answered_by(server, request_line: str, send) -> int:
    """The pid of the worker that answered send() (gunicorn writes the access-log line just after the response)."""
    pattern = rf'"{request_line} .* worker=<(\d+)>'
    before = len(re.findall(pattern, server.log()))
    send()
    wait_until(lambda: len(re.findall(pattern, server.log())) > before, 10, "the access log line")
    return int(re.findall(pattern, server.log())[-1])


def embed_alone(server, texts: list[str]) -> int:
    """Embed texts in one request; the pid of the worker that answered."""
    return answered_by(server, "POST /v1/embeddings", lambda: embed(server, texts))


def torch_threads(server, pid: int) -> float:
    return scrape(server.url)[("embedding_worker_torch_threads", (("pid", str(pid)),))]


@pytest.fixture(scope="module")
def shared_run(auto_server, texts):
    """The same 40 texts embedded by two concurrent requests (both workers busy), and where the log was before."""
    before = len(auto_server.log())
    with ThreadPoolExecutor(2) as pool:
        vectors = list(pool.map(lambda _: embed(auto_server, texts[:40]), range(2)))
    return vectors, auto_server.log()[before:]


@needs_two_cores
def test_a_lone_request_runs_on_every_core(auto_server):
    assert torch_threads(auto_server, embed_alone(auto_server, ["one client at a time"] * 8)) == CORES


@needs_two_cores
def test_busy_workers_share_the_cores(shared_run):
    _, log = shared_run
    assert len(set(SHARED.findall(log))) == 2, log[-3000:]


@needs_two_cores
def test_embeddings_do_not_depend_on_the_share(auto_server, shared_run, texts):
    alone = {}
    pid = answered_by(auto_server, "POST /v1/embeddings", lambda: alone.update(vectors=embed(auto_server, texts[:40])))
    assert torch_threads(auto_server, pid) == CORES  # computed on every core, the shared runs on one each
    for shared in shared_run[0]:
        assert float(np.sum(shared * alone["vectors"], axis=1).min()) >= 0.99999


@needs_two_cores
def test_a_killed_busy_workers_share_comes_back(auto_server, texts):
    """A worker killed inside a request would leave its slot busy (the other one at half the cores) unless the
    master frees it (child_exit); the other worker, alone until the replacement has loaded, must get every core."""
    outcome = []

    def doomed_request():
        try:
            outcome.append(embed(auto_server, texts * 7))  # 1834 texts: twice as many finished within 3 s
        except requests.RequestException as exc:  # expected: its worker is killed
            outcome.append(exc)

    request = threading.Thread(target=doomed_request)
    request.start()
    time.sleep(3)  # inside the request: its forwards take far longer
    idle = answered_by(auto_server, "GET /health", lambda: requests.get(f"{auto_server.url}/health", timeout=30))
    busy = next(pid for pid in auto_server.worker_pids() if pid != idle)
    os.kill(busy, signal.SIGKILL)
    # gunicorn logs the SIGKILL before it calls child_exit, which frees the slot: wait for the slot itself.
    wait_until(lambda: f"worker {busy} exited: thread-budget slot" in auto_server.log(), 30, "the master to free its slot")
    request.join(60)
    assert outcome and not isinstance(outcome[0], np.ndarray)  # it was inside the request when killed
    # The replacement is usually still loading, so the idle worker answers; should the replacement be ready and take
    # a request first, ask again: the idle worker's share is what is checked (a worker alone in a request gets all).
    assert any(embed_alone(auto_server, ["after the kill"] * 8) == idle for _ in range(20))
    assert torch_threads(auto_server, idle) == CORES


@pytest.mark.parametrize("cpu_max, cores", [("max 100000\n", CORES), ("100000 100000\n", 1), ("50000 100000\n", 1),
                                            (f"{CORES * 200000} 100000\n", CORES)])
def test_a_cgroup_cpu_quota_caps_the_cores(tmp_path, cpu_max, cores):
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert available_cores(str(tmp_path / "cpu.max")) == cores


def test_auto_workers_wait_briefly_then_sleep_unless_the_operator_chose():
    auto = SharedCores(2, cores=2)
    assert auto.openmp_waits({}) == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}
    assert auto.openmp_waits({"OMP_WAIT_POLICY": "ACTIVE"}) == {}  # an operator's own choice is kept whole
    assert auto.openmp_waits({"GOMP_SPINCOUNT": "0"}) == {}
    assert FixedThreads(2, 2, cores=2).openmp_waits({}) == {}  # fixed threads: the runtime's defaults, as before


@pytest.mark.parametrize("workers, threads, cores, warned", [
    (2, None, 2, False), (2, 1, 2, False), (1, 2, 2, False), (4, 2, 8, False),
    (3, 2, 2, True), (2, 2, 2, True), (3, None, 2, True)])
def test_workers_times_threads_over_the_cores_is_warned_about(workers, threads, cores, warned):
    message = for_settings(Settings(workers=workers, threads_per_worker=threads), cores).oversubscription()
    assert (message is not None) == warned
    if warned:
        assert f"EMBEDDING_SERVER_WORKERS={workers}" in message and f"{cores} core(s)" in message


def test_the_server_warns_at_start_up_when_threads_outnumber_the_cores(output_dir, tiny_model_dir):
    with GunicornServer(output_dir / "gunicorn-oversubscribed.log", workers=1, MODEL_NAME=str(tiny_model_dir),
                        EMBEDDING_SERVER_THREADS_PER_WORKER=str(CORES + 1)) as server:
        assert f"EMBEDDING_SERVER_THREADS_PER_WORKER={CORES + 1} = {CORES + 1} torch threads" in server.log()
