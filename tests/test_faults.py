"""Faults against real gunicorn on the tiny model: kill -9, reload, SIGTERM under load, a long load test."""

import os
import random
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from embedding_app.inference.choice_cache import ChoiceCache
from harness.clients import ClientThreads
from harness.server import GunicornServer, rss_mb, wait_until

# 64-token batches of the tiny model cost ~0.3 ms per input on one core: tens of thousands take seconds. One thread
# per worker: the speed each worker measures (and admits work by) then holds on a machine busy with other work.
SLOW = {"BATCH_TOKENS": "64", "MAX_INPUTS": "100000", "MAX_TOKENS_PER_REQUEST": "100000000", "QUANTIZE": "false",
        "SERVED_MODEL_NAME": "tiny", "EMBEDDING_SERVER_THREADS_PER_WORKER": "1"}
GAP_SECONDS = 2.0  # the longest pause in answers a rolling reload may cause on a loaded 2-core machine
LOAD_SECONDS = float(os.environ.get("LOAD_TEST_SECONDS", "60"))
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "embeddings", "of", "many", "sentences", "are", "computed"]


def slow_server(log_path, model: str, timeout: int) -> GunicornServer:
    """Real gunicorn, not started: 2 one-thread fp32 workers computing in 64-token batches, this timeout (s)."""
    return GunicornServer(log_path, workers=2, MODEL_NAME=model, EMBEDDING_SERVER_TIMEOUT=str(timeout), **SLOW)


def slow_input(count: int, token_ids: bool = False) -> dict:
    """A request that keeps a worker busy for seconds; token ids skip tokenization, one long call into Rust."""
    if token_ids:
        return {"input": [[1000 + i % 20000] * 14 for i in range(count)]}
    return {"input": [f"sentence number {i} with a few more words" for i in range(count)]}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def refused(port: int) -> bool:
    """Whether a TCP connection to this localhost port is refused."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return False
    except ConnectionRefusedError:
        return True


class Load(ClientThreads):
    """Client threads posting small, varied embeddings requests until stopped; outcomes are counted."""

    def __init__(self, url: str, clients: int):
        self.url = f"{url}/v1/embeddings"
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.last_ok = 0.0
        self.longest_gap = 0.0  # the longest time without any successful answer
        super().__init__(clients)

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.running:
            texts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 40))) for _ in range(rng.randint(1, 16))]
            body = {"input": texts, "encoding_format": rng.choice(["float", "base64"])}
            try:
                response = requests.post(self.url, json=body, timeout=60)
                outcome = None if response.status_code == 200 else f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            with self.lock:
                if outcome is None:
                    self.ok += 1
                    now = time.monotonic()
                    self.longest_gap = max(self.longest_gap, now - self.last_ok) if self.last_ok else 0.0
                    self.last_ok = now
                else:
                    self.failures.append(outcome)
            if outcome is not None:
                time.sleep(0.05)  # a refused connection returns at once: do not spin

    def wait_for_successes(self, count: int, timeout: float = 60) -> None:
        target = self.ok + count
        wait_until(lambda: self.ok >= target, timeout, f"{count} more successful requests")


@pytest.fixture(scope="module")
def server(tiny_model_dir, output_dir):
    """Real gunicorn: 2 workers, tiny model, 5 s timeout; shared by the kill, reload, timeout and load tests."""
    with slow_server(output_dir / "gunicorn-faults.log", str(tiny_model_dir), 5) as server:
        yield server


def test_killed_worker_is_replaced_and_only_its_request_fails(server):
    victim, survivor = server.worker_pids()
    loaded = server.log().count("loaded ")
    with Load(server.url, clients=4) as load:
        load.wait_for_successes(20)
        os.kill(victim, signal.SIGKILL)
        served_at_kill = load.ok
        # The other worker keeps answering: waited for on its own, since the replacement may load in a fraction of a
        # second (before the survivor's next answer).
        wait_until(lambda: load.ok > served_at_kill, 30, "the surviving worker to answer")
        wait_until(lambda: server.log().count("loaded ") > loaded, 90, "a replacement worker")
        load.wait_for_successes(20)
    pids = server.worker_pids()
    assert len(pids) == 2 and survivor in pids and victim not in pids
    assert len(load.failures) <= 1, load.failures  # a sync worker had at most one request in hand


def reload_events(log: str) -> list[tuple[str, int]]:
    """("ready", pid) and ("exit", pid) in log order, from the last SIGHUP on."""
    after_hup = log[log.rindex("Hang up"):]
    pattern = re.compile(r"pid (\d+): ready [\d.]+s after fork|Worker exiting \(pid: (\d+)\)")
    return [("ready", int(m[1])) if m[1] else ("exit", int(m[2])) for m in pattern.finditer(after_hup)]


def test_reload_with_hup_replaces_workers_one_at_a_time_without_a_gap(server):
    old = set(server.worker_pids())
    loaded = server.log().count("loaded ")
    with Load(server.url, clients=4) as load:
        load.wait_for_successes(10)
        with load.lock:
            load.longest_gap = 0.0  # from the reload on
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: server.log().count("loaded ") >= loaded + 2, 90, "two reloaded workers")
        wait_until(lambda: len(server.worker_pids()) == 2, 30, "the old workers to exit")
        load.wait_for_successes(20)
    assert not old & set(server.worker_pids())
    assert load.failures == []
    # Rolling: each old worker exits only after one more new worker is ready, so one always serves.
    ready = exited = 0
    for event, pid in reload_events(server.log()):
        ready += event == "ready"
        exited += event == "exit" and pid in old
        assert exited <= ready, reload_events(server.log())
    assert (ready, exited) == (2, 2)
    reload_seconds = server.ready_seconds()[-2:]
    print(f"longest gap between answers during the reload {load.longest_gap:.2f}s; "
          f"new workers ready after {reload_seconds}")
    # The event order above proves the reload rolling; this bounds the pause it caused. Not the workers' load time:
    # the tiny model loads in a fraction of a second, less than a client thread may wait for a core here.
    assert load.longest_gap < GAP_SECONDS


def test_load_at_four_times_workers_has_no_errors_and_flat_memory(server):
    pids = server.worker_pids()
    with Load(server.url, clients=4 * len(pids)) as load:
        time.sleep(min(10.0, LOAD_SECONDS / 4))  # warm-up: allocator pools and caches reach their size
        before = {pid: rss_mb(pid) for pid in pids}
        served_before = load.ok
        time.sleep(LOAD_SECONDS)
        after = {pid: rss_mb(pid) for pid in pids}
    print(f"\n{load.ok - served_before} requests in {LOAD_SECONDS:.0f}s; RSS MB before {before} after {after}")
    assert load.failures == [] and load.ok - served_before > 100
    assert set(server.worker_pids()) == set(pids)
    for pid in pids:
        assert after[pid] - before[pid] < 16, f"worker {pid} grew from {before[pid]:.1f} to {after[pid]:.1f} MB"


def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(tiny_model_dir, output_dir):
    server = slow_server(output_dir / "gunicorn-sigterm.log", str(tiny_model_dir), 60).start()
    try:
        workers = server.worker_pids()
        busy = {pid: cpu_seconds(pid) for pid in workers}
        result = {}

        def slow():
            result["response"] = requests.post(f"{server.url}/v1/embeddings", json=slow_input(20_000), timeout=120)

        thread = threading.Thread(target=slow)
        thread.start()
        # Wait until a worker is computing the slow request, not merely until it was sent.
        wait_until(lambda: any(cpu_seconds(pid) - busy[pid] > 1.0 for pid in workers), 60, "the slow request")
        with Load(server.url, clients=2) as load:
            load.wait_for_successes(5)
            served = load.ok
            server.process.send_signal(signal.SIGTERM)
            wait_until(lambda: refused(server.port), 10, "the master to close its socket")
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(requests.ConnectionError):
                    requests.post(f"{server.url}/v1/embeddings", json={"input": "late"}, timeout=30)
                assert time.monotonic() - started < 2  # refused at once, not queued until the busy worker exits
            thread.join(120)
        assert result["response"].status_code == 200 and len(result["response"].json()["data"]) == 20_000
        assert server.process.wait(60) == 0
        assert load.ok >= served and not any(failure.startswith("HTTP") for failure in load.failures)
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_sigterm_while_workers_load_stops_at_once(tiny_model_dir, output_dir, tmp_path):
    # The workers load in well under a second; holding the kernel-choice lock keeps them loading (waiting to probe).
    with ChoiceCache(str(tmp_path)).locked():
        server = GunicornServer(output_dir / "gunicorn-boot-sigterm.log", workers=2, MODEL_NAME=str(tiny_model_dir),
                                EMBEDDING_SERVER_TIMEOUT="60", KERNEL_CACHE_DIR=str(tmp_path)).start(wait=False)
        try:
            wait_until(lambda: server.log().count("Booting worker") == 2, 60, "two workers to fork")
            time.sleep(1)
            loading = "loaded " not in server.log()
        finally:
            started = time.monotonic()
            stopped = server.stop()
    assert loading and stopped == 0
    assert time.monotonic() - started < 10  # not the 60 s graceful timeout
    assert "Traceback" not in server.log()
