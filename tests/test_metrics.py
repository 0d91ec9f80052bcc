"""GET /metrics: Prometheus text that adds up every gunicorn worker's requests, and forgets dead workers; access log."""

from __future__ import annotations

import glob
import os
import random
import re
import signal
import string
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness.server import GunicornServer, wait_until

REQUESTS = 24


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = requests.get(f"{url}/metrics", timeout=30)
    response.raise_for_status()
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def embeddings_count(samples) -> float:
    key = ("embedding_http_requests_total", (("method", "POST"), ("route", "/v1/embeddings"), ("status", "200")))
    return samples.get(key, 0.0)


@pytest.fixture(scope="module")
def busy_server(output_dir, tiny_model_dir):
    """Two workers on the tiny model that have answered REQUESTS concurrent embeddings requests between them."""
    with GunicornServer(output_dir / "gunicorn-metrics.log", workers=2, MODEL_NAME=str(tiny_model_dir),
                        QUANTIZE="false") as server:
        # A worker logs "ready" before gunicorn has built its app and accepts: until both answer, one worker may take
        # all the millisecond-long requests below.
        def both_answer() -> bool:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda _: requests.get(f"{server.url}/v1/models", timeout=30), range(8)))
            return len(set(re.findall(r'"GET /v1/models HTTP/1.1" 200 .* worker=<?(\d+)', server.log()))) == 2

        wait_until(both_answer, 30, "both workers to answer")

        def embed(i):
            body = {"input": [f"text {i}", "another text"]}
            return requests.post(f"{server.url}/v1/embeddings", json=body, timeout=60).status_code

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(embed, range(REQUESTS))) == {200}
        yield server


def test_requests_were_served_by_both_workers(busy_server):
    def served():
        return re.findall(r'"POST /v1/embeddings HTTP/1.1" 200 .* worker=<?(\d+)', busy_server.log())

    # A worker writes its access line just after sending the answer: wait for it, never read right away.
    wait_until(lambda: len(served()) >= REQUESTS, 10, f"{REQUESTS} access lines")
    assert len(set(served())) == 2


def test_every_scrape_counts_all_workers_requests(busy_server):
    for _ in range(6):  # each scrape may land on either worker
        assert embeddings_count(scrape(busy_server.url)) == REQUESTS


def test_texts_tokens_batches_and_latency_are_recorded(busy_server, tiny_model_dir):
    samples = scrape(busy_server.url)
    model = (("model", tiny_model_dir.name),)  # the served name labels the model's counters
    assert samples[("embedding_inputs_total", model)] == 2 * REQUESTS
    assert samples[("embedding_tokens_total", model)] > 2 * REQUESTS * 2  # each input has [CLS] and [SEP] at least
    assert samples[("embedding_truncated_inputs_total", model)] == 0
    assert samples[("embedding_request_inputs_count", ())] == REQUESTS
    assert samples[("embedding_batch_size_count", ())] >= REQUESTS
    assert samples[("embedding_padding_tokens_total", ())] == 0  # a BERT model: packed, no padding
    latency = ("embedding_http_request_duration_seconds_count",
               (("method", "POST"), ("route", "/v1/embeddings"), ("status", "200")))
    assert samples[latency] == REQUESTS


def test_errors_are_labelled_by_status_and_unknown_paths_share_one_route(busy_server):
    requests.post(f"{busy_server.url}/v1/embeddings", json={"input": ""}, timeout=30)
    requests.get(f"{busy_server.url}/no/such/path", timeout=30)
    samples = scrape(busy_server.url)
    assert samples[("embedding_http_requests_total",
                    (("method", "POST"), ("route", "/v1/embeddings"), ("status", "400")))] == 1
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert samples[("embedding_http_requests_total", unmatched)] == 1


def test_worker_count_and_time_to_ready_follow_live_workers(busy_server):
    samples = scrape(busy_server.url)
    assert samples[("embedding_workers", ())] == 2
    ready = {labels[0][1]: value for (name, labels), value in samples.items() if name == "embedding_worker_ready_seconds"}
    assert len(ready) == 2
    for pid, seconds in ready.items():  # the same figure as the log's "ready ... after fork" line
        assert f"pid {pid}: ready {seconds:.2f}s after fork" in busy_server.log()


def test_a_replaced_worker_is_not_counted_twice(busy_server):
    before = embeddings_count(scrape(busy_server.url))
    victim = busy_server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    # The gauge is set where the "ready ... after fork" line is logged, after "loaded": wait for the replacement's.
    while victim in busy_server.worker_pids() or len(busy_server.worker_pids()) < 2 or \
            len(busy_server.ready_seconds()) < 3:
        assert time.monotonic() < deadline, busy_server.log()
        time.sleep(0.2)
    samples = scrape(busy_server.url)
    assert samples[("embedding_workers", ())] == 2
    assert ("embedding_worker_ready_seconds", (("pid", str(victim)),)) not in samples
    assert embeddings_count(samples) == before  # the dead worker's requests still count
    # Its files were folded into one total for dead workers: restarts do not grow the directory.
    directory = glob.glob(f"/dev/shm/embedding-metrics-{busy_server.process.pid}-*")[0]
    assert not glob.glob(f"{directory}/*_{victim}.db")
    assert {"counter_dead.db", "histogram_dead.db"} <= set(os.listdir(directory))


def test_access_log_has_real_requests_but_not_probes_or_scrapes(busy_server):
    requests.get(f"{busy_server.url}/v1/models", headers={"User-Agent": "probe-test/1.0"}, timeout=30)
    line = re.compile(r'\[\d+/\w+/\d{4}:[\d:]+ [+-]\d{4}\] 127\.0\.0\.1 "GET /v1/models HTTP/1\.1" 200 \d+B \d+ms '
                      r'worker=<?\d+>? agent="probe-test/1\.0"')
    wait_until(lambda: line.search(busy_server.log()), 10, "the access line of GET /v1/models")
    log = busy_server.log()
    assert '"GET /health' not in log and '"GET /metrics' not in log


def series(url: str) -> tuple[int, set]:
    """The size of /metrics in bytes and its set of series (names and labels)."""
    text = requests.get(f"{url}/metrics", timeout=30).text
    return len(text), {(s.name, tuple(sorted(s.labels.items())))
                       for family in text_string_to_metric_families(text) for s in family.samples}


def test_random_methods_do_not_grow_metrics(busy_server):
    rng = random.Random(9)
    paths = ("/v1/embeddings", "/no/such/path")

    def send_random_methods(count: int) -> None:
        for i in range(count):
            method = "".join(rng.choices(string.ascii_uppercase, k=12))
            assert requests.request(method, busy_server.url + paths[i % 2], timeout=30).status_code in (404, 405)

    send_random_methods(8)  # creates the "other" series (and the scrapes' own) in both workers
    series(busy_server.url)
    size, before = series(busy_server.url)
    send_random_methods(300)
    size_after, after = series(busy_server.url)
    assert after == before
    assert size_after - size < 300  # only counts and sums gain digits
