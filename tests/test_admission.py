"""Heavy requests on real gunicorn: probes that busy workers cannot starve, work refused before it is wasted."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from harness.server import GunicornServer, wait_until

from .test_faults import SLOW, slow_input, slow_server


@pytest.fixture(scope="module")
def server(tiny_model_dir, output_dir):
    """Real gunicorn: 2 workers, the tiny model computing in 64-token batches, 10 s timeout."""
    with slow_server(output_dir / "gunicorn-admission.log", str(tiny_model_dir), 10) as server:
        yield server


@pytest.fixture(scope="module")
def minilm_server(output_dir):
    """all-MiniLM-L6-v2 on 1 fp32 thread per worker, 10 s timeout: ~a million tokens take it far longer on any CPU
    (the tiny model may compute them within the timeout on a fast core)."""
    with slow_server(output_dir / "gunicorn-admission-minilm.log", "", 10) as server:
        yield server


def post(server, body: dict, headers: dict | None = None) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.post(f"{server.url}/v1/embeddings", json=body, headers=headers, timeout=120)
    return response, time.monotonic() - started


def test_health_answers_at_once_while_every_worker_computes(server):
    probes = []
    with ThreadPoolExecutor(4) as pool:
        heavy = [pool.submit(post, server, slow_input(15_000)) for _ in range(4)]
        while not all(future.done() for future in heavy):
            for path in ("/health", "/livez", "/readyz"):
                started = time.monotonic()
                response = requests.get(server.health_url + path, timeout=10)
                probes.append((path, response.status_code, time.monotonic() - started, response.json()))
            time.sleep(0.2)
        answers = [future.result() for future in heavy]
    assert all(response.status_code == 200 for response, _ in answers), [r.text[:200] for r, _ in answers]
    assert max(seconds for *_, seconds, _ in probes) < 1, probes
    assert {status for _, status, *_ in probes} == {200}
    assert any(body["workers"] == {"alive": 2, "ready": 2, "busy": 2} for *_, body in probes)
    health = next(body for path, _, _, body in probes if path == "/health")
    assert health["status"] == "ok" and health["models"][0]["id"] == "tiny"
    print(f"{len(probes)} probes while 4 requests of {max(s for _, s in answers):.1f}s ran; slowest probe "
          f"{max(seconds for *_, seconds, _ in probes) * 1000:.0f} ms")


def test_work_that_cannot_finish_in_time_is_refused_before_computing(minilm_server):
    # Before: computed for the whole timeout, then a 503 and the worker killed. Now a 400 naming the limit, which
    # the OpenAI SDK does not retry; the estimate comes from the speed the worker measured.
    pids, refused = minilm_server.worker_pids(), minilm_server.log().count('"POST /v1/embeddings HTTP/1.1" 400')
    client = openai.OpenAI(base_url=f"{minilm_server.url}/v1", api_key="unused", max_retries=2)
    started = time.monotonic()
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model="tiny", **slow_input(60_000, token_ids=True))
    assert time.monotonic() - started < 5  # refused after parsing, not stopped at the 10 s timeout
    assert error.value.body["code"] == "too_many_tokens"
    message = error.value.body["message"]
    assert "EMBEDDING_SERVER_TIMEOUT" in message and "tokens per request" in message
    wait_until(lambda: minilm_server.log().count('"POST /v1/embeddings HTTP/1.1" 400') > refused, 10,
               "the access log line")
    time.sleep(1)
    assert minilm_server.log().count('"POST /v1/embeddings HTTP/1.1" 400') == refused + 1  # not retried
    assert minilm_server.worker_pids() == pids and "WORKER TIMEOUT" not in minilm_server.log()


def test_request_queued_past_its_deadline_is_not_computed(server):
    stale = {"X-Request-Start": f"t={time.time() - 11:.3f}"}  # the proxy passed it on 11 s ago: past the 10 s
    response, seconds = post(server, slow_input(15_000), stale)
    assert response.status_code == 503 and seconds < 1, response.text
    assert response.json()["error"]["code"] == "server_overloaded" and int(response.headers["Retry-After"]) >= 1
    fresh = {"X-Request-Start": f"t={time.time():.3f}"}
    assert post(server, {"input": "still served"}, fresh)[0].status_code == 200


def test_worker_stops_computing_when_its_client_leaves(tiny_model_dir, output_dir):
    with GunicornServer(output_dir / "gunicorn-client-gone.log", workers=1, MODEL_NAME=str(tiny_model_dir),
                        EMBEDDING_SERVER_TIMEOUT="60", **SLOW) as server:
        started = time.monotonic()
        assert post(server, slow_input(15_000))[0].status_code == 200
        alone = time.monotonic() - started
        body = json.dumps(slow_input(15_000)).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.5)
        response, seconds = post(server, {"input": "next"})
        assert response.status_code == 200 and seconds < alone / 2, f"{seconds:.1f}s; alone {alone:.1f}s"
        wait_until(lambda: "closed the connection: stopped computing" in server.log(), 10, "the log line")


def test_a_request_under_the_token_limit_that_cannot_finish_in_time_is_refused_up_front(output_dir):
    # all-MiniLM-L6-v2 in fp32 on one thread: ~300,000 tokens would take minutes, far past the 10 s limit.
    with GunicornServer(output_dir / "gunicorn-admission-minilm.log", workers=1, MODEL_NAME="", QUANTIZE="false",
                        EMBEDDING_SERVER_TIMEOUT="10", EMBEDDING_SERVER_THREADS_PER_WORKER="1") as server:
        response, seconds = post(server, {"input": ["word " * 300] * 1171})  # 1171 x 256 = 299,776 tokens
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "too_many_tokens", response.text
    assert "299776 tokens" in error["message"] and "EMBEDDING_SERVER_TIMEOUT" in error["message"]
    assert seconds < 5
    print(f"refused in {seconds:.1f}s: {error['message']}")
