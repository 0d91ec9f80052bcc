"""GET /metrics: Prometheus text that adds up every gunicorn worker's requests, and forgets dead workers; access log."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .server import GunicornServer

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
        def embed(i):
            body = {"input": [f"text {i}", "another text"]}
            return requests.post(f"{server.url}/v1/embeddings", json=body, timeout=60).status_code

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(embed, range(REQUESTS))) == {200}
        yield server


def test_requests_were_served_by_both_workers(busy_server):
    pids = set(re.findall(r'"POST /v1/embeddings HTTP/1.1" 200 .* worker=<?(\d+)', busy_server.log()))
    assert len(pids) == 2


def test_every_scrape_counts_all_workers_requests(busy_server):
    for _ in range(6):  # each scrape may land on either worker
        assert embeddings_count(scrape(busy_server.url)) == REQUESTS


def test_texts_tokens_batches_and_latency_are_recorded(busy_server):
    samples = scrape(busy_server.url)
    assert samples[("embedding_inputs_total", ())] == 2 * REQUESTS
    assert samples[("embedding_tokens_total", ())] > 2 * REQUESTS * 2  # each input has [CLS] and [SEP] at least
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


def test_worker_count_and_load_time_follow_live_workers(busy_server):
    samples = scrape(busy_server.url)
    assert samples[("embedding_workers", ())] == 2
    assert [name for name, _ in samples].count("embedding_model_load_seconds") == 2


def test_a_replaced_worker_is_not_counted_twice(busy_server):
    before = embeddings_count(scrape(busy_server.url))
    victim = busy_server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while victim in busy_server.worker_pids() or len(busy_server.worker_pids()) < 2 or \
            busy_server.log().count("loaded ") < 3:
        assert time.monotonic() < deadline, busy_server.log()
        time.sleep(0.2)
    samples = scrape(busy_server.url)
    assert samples[("embedding_workers", ())] == 2
    assert ("embedding_model_load_seconds", (("pid", str(victim)),)) not in samples
    assert embeddings_count(samples) == before  # the dead worker's requests still count


def test_access_log_has_real_requests_but_not_probes_or_scrapes(busy_server):
    requests.get(f"{busy_server.url}/v1/models", headers={"User-Agent": "probe-test/1.0"}, timeout=30)
    log = busy_server.log()
    assert re.search(r'\[\d+/\w+/\d{4}:[\d:]+ [+-]\d{4}\] 127\.0\.0\.1 "GET /v1/models HTTP/1\.1" 200 \d+B \d+ms '
                     r'worker=<?\d+>? agent="probe-test/1\.0"', log), log[-2000:]
    assert '"GET /health' not in log and '"GET /metrics' not in log
