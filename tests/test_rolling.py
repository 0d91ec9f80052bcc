"""Rolling reload (SIGHUP) against a fake arbiter: oldest first, each old worker stopped only once its successor serves."""

from __future__ import annotations

import queue
import signal
import time
from types import SimpleNamespace

import pytest

from embedding_app.serving import rolling


class FakeWorker:
    """A worker as the arbiter holds it: its age and its heartbeat file (touched once the model has loaded)."""

    def __init__(self, age: int):
        self.age = age
        self.beat = 0.0
        self.tmp = SimpleNamespace(last_update=lambda: self.beat)


class FakeArbiter:
    """What rolling_reload uses of gunicorn's Arbiter; new workers boot (first heartbeat) when reaped, or never."""

    def __init__(self, ages: list[int], boots: str = "ready"):
        self.WORKERS = {100 + age: FakeWorker(age) for age in ages}
        self.SIG_QUEUE: queue.Queue = queue.Queue()
        self.cfg = SimpleNamespace(graceful_timeout=5)
        self.log = SimpleNamespace(reopen_files=lambda: None, info=self.record, error=self.record)
        self.boots, self.next_age, self.stopping = boots, max(ages) + 1, set()
        self.events: list[tuple[str, int]] = []
        self.messages: list[str] = []

    def record(self, message, *args):
        self.messages.append(message % args)

    def spawn_worker(self) -> int:
        pid = 200 + self.next_age
        self.WORKERS[pid] = FakeWorker(self.next_age)
        self.next_age += 1
        self.events.append(("spawn", pid))
        return pid

    def kill_worker(self, pid: int, sig: int) -> None:
        assert sig == signal.SIGTERM
        self.events.append(("stop", pid))
        self.stopping.add(pid)

    def reap_workers(self) -> None:
        for pid, worker in list(self.WORKERS.items()):
            if pid in self.stopping or (pid >= 200 and self.boots == "exits"):
                del self.WORKERS[pid]
            elif pid >= 200 and self.boots == "ready":
                worker.beat = 1.0


@pytest.fixture(autouse=True)
def short_wait(monkeypatch):
    monkeypatch.setattr(rolling, "READY_SECONDS", 0.3)


def test_workers_are_replaced_oldest_first_each_after_its_successor_is_ready():
    arbiter = FakeArbiter([3, 1, 2])
    rolling.rolling_reload(arbiter)
    assert arbiter.events == [("spawn", 204), ("stop", 101), ("spawn", 205), ("stop", 102),
                              ("spawn", 206), ("stop", 103)]
    assert sorted(arbiter.WORKERS) == [204, 205, 206]
    assert arbiter.messages[-1] == "reload: worker 3 of 3 replaced (pid 103 stopped)"


@pytest.mark.parametrize("boots", ["never", "exits"])
def test_the_reload_stops_when_a_successor_does_not_become_ready(boots):
    arbiter = FakeArbiter([1, 2], boots=boots)
    rolling.rolling_reload(arbiter)
    assert arbiter.events == [("spawn", 203)]  # no old worker stopped
    assert {101, 102} <= set(arbiter.WORKERS)
    assert "reload stopped" in arbiter.messages[-1]


def test_a_queued_stop_signal_ends_the_reload_at_once_and_stays_queued(monkeypatch):
    monkeypatch.setattr(rolling, "READY_SECONDS", 600)
    arbiter = FakeArbiter([1, 2], boots="never")
    arbiter.SIG_QUEUE.put_nowait(signal.SIGWINCH)
    arbiter.SIG_QUEUE.put_nowait(signal.SIGTERM)
    began = time.monotonic()
    rolling.rolling_reload(arbiter)
    assert time.monotonic() - began < 5  # not the 600 s a successor may take to load
    assert arbiter.events == [("spawn", 203)]
    assert [arbiter.SIG_QUEUE.get_nowait() for _ in range(2)] == [signal.SIGWINCH, signal.SIGTERM]  # in order


def test_other_queued_signals_do_not_stop_it():
    arbiter = FakeArbiter([1])
    arbiter.SIG_QUEUE.put_nowait(signal.SIGWINCH)
    rolling.rolling_reload(arbiter)
    assert arbiter.events == [("spawn", 202), ("stop", 101)]
