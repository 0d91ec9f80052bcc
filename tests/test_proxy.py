"""The compose stack through its nginx proxy: slow and hostile clients, load shedding, flat memory, client addresses."""

from __future__ import annotations

import http.client
import json
import random
import socket
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from embedding_app.api.error_catalogue import CATALOGUE

from .containers import compose, stack  # noqa: F401 (fixtures)
from .test_bad_input import CASES, check_openai_error

# The bad-input matrix names the models "tiny" and "tiny-prompted" (with a query prompt): the stack serves the
# packaged model under both names, so every case means the same through the proxy as against gunicorn.
MATRIX_MODELS = {"MODEL_NAME": "tiny=default,tiny-prompted=default",
                 "MODEL_PROMPTS": json.dumps({"tiny-prompted": {"prompts": {"query": "query: "}}})}


@pytest.fixture(scope="module", autouse=True)
def matrix_models(compose):
    """Serve the matrix's model names from the stack (set before the stack starts: autouse fixtures come first)."""
    compose.env.update(MATRIX_MODELS)


# Requests that reach the proxy half-sent: a body shorter than its Content-Length, headers cut off, nothing at all.
SLOW_STARTS = 3 * [(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 4000\r\n\r\n{\"input\": \"half a bo")] + \
              3 * [b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Ty"] + 2 * [b""]
# Malformed HTTP that nginx itself rejects: (id, raw request, status).
MALFORMED = [
    ("bad-request-line", b"GARBAGE\r\n\r\n", 400),
    ("lowercase-method", b"get /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("http-2-request-line", b"GET /v1/models HTTP/2.0\r\nHost: x\r\n\r\n", 400),
    ("url-5kb", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("header-6kb", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 6000 + b"\r\n\r\n", 431),
    ("headers-20kb", b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000)
                                                                       for i in range(20)) + b"\r\n", 431),
    ("150-headers", b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150))
     + b"\r\n", 200),
    ("duplicate-content-length", (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 14\r\nContent-Length: 15\r\n\r\n{\"input\":\"x\"}"), 400),
    ("negative-content-length", b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("bare-lf", b"GET /v1/models HTTP/1.1\nHost: x\n\n", 200),  # nginx accepts it and passes on clean CRLF
    ("chunk-size-zz", (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-size-negative", (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"-1\r\nabc\r\n0\r\n\r\n"), 400),
    ("chunk-too-much-data", (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\nabcdef\r\n0\r\n\r\n"), 400),
    ("transfer-encoding-gzip", b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("content-length-and-chunked", (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
    ("nul-in-header", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("path-above-root", b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("trace", b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
]


def send_raw(port: int, data: bytes) -> tuple[int, str, bytes]:
    """Send bytes as they are; return the status, Content-Type and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.getheader("Content-Type", ""), response.read()


def timed_embedding(url: str, texts: list[str]) -> tuple[int, float, requests.Response]:
    started = time.monotonic()
    response = requests.post(f"{url}/v1/embeddings", json={"input": texts}, timeout=120)
    return response.status_code, time.monotonic() - started, response


def test_slow_clients_do_not_hold_the_workers(stack):
    sockets = [socket.create_connection(("127.0.0.1", stack.port), timeout=30) for _ in SLOW_STARTS]
    try:
        for sock, data in zip(sockets, SLOW_STARTS):
            sock.sendall(data)
        time.sleep(1)
        status, seconds, _ = timed_embedding(stack.url, ["Still served while eight clients stall."])
        assert status == 200 and seconds < 5, f"{status} after {seconds:.1f}s"
        assert requests.get(f"{stack.url}/health", timeout=5).status_code == 200
        # nginx drops them after PROXY_CLIENT_TIMEOUT (10 s) of silence (a part-sent request with a reset:
        # reset_timedout_connection frees its memory at once); none was ever passed to a worker.
        for sock in sockets:
            try:
                assert sock.recv(4096) == b""
            except ConnectionResetError:
                pass
    finally:
        for sock in sockets:
            sock.close()


def test_random_method_flood_leaves_metrics_size_unchanged(stack):
    def flood(count: int) -> None:
        session = requests.Session()
        for _ in range(count):
            method = "".join(random.choices(string.ascii_uppercase, k=random.randint(5, 12)))
            assert session.request(method, f"{stack.url}/v1/embeddings", timeout=30).status_code < 500

    flood(20)  # the series for unknown methods exist from here on; later floods only change their counts
    before = len(requests.get(f"{stack.url}/metrics", timeout=30).content)
    flood(300)
    after = len(requests.get(f"{stack.url}/metrics", timeout=30).content)
    assert after - before < 4096, f"/metrics grew from {before} to {after} bytes"


@pytest.mark.parametrize("method, path, headers, data, status, param", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_gets_the_same_openai_errors_through_the_proxy(stack, method, path, headers, data, status, param):
    response = requests.request(method, stack.url + path, headers=headers, data=data, timeout=60)
    check_openai_error(response, status, param)


@pytest.mark.parametrize("data, status", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_http_gets_a_json_answer(stack, data, status):
    answer, content_type, body = send_raw(stack.port, data)
    assert (answer, content_type) == (status, "application/json"), body[:300]
    if status >= 400:
        error = json.loads(body)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert CATALOGUE[error["code"]][:2] == (status, error["type"])  # the code gunicorn answers for the same fault


def test_overload_is_queued_then_shed_with_retry_after_and_probes_answer_at_once(stack, texts):
    longest = sorted(texts, key=len)[-16:]
    with ThreadPoolExecutor(40) as pool:
        answers = [pool.submit(timed_embedding, stack.url, longest) for _ in range(40)]
        time.sleep(2)
        probes = {}
        for path in ("/health", "/livez", "/readyz"):
            started = time.monotonic()
            probes[path] = (requests.get(f"{stack.url}{path}", timeout=60).status_code, time.monotonic() - started)
        results = [answer.result(timeout=180) for answer in answers]
    statuses = [status for status, _, _ in results]
    shed = [response for status, _, response in results if status == 503]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 32, statuses  # PROXY_MAX_IN_FLIGHT: 2 x 16 queued
    for response in shed:
        assert int(response.headers["Retry-After"]) >= 1 and response.json()["error"]["code"] == "server_overloaded"
    # gunicorn's master answers the probes on its health port: they never wait behind the queued requests.
    assert all(status == 200 and seconds < 2 for status, seconds in probes.values()), probes
    print(f"probes {probes} while {statuses.count(200)} requests were served and {len(shed)} shed")


def test_gunicorn_logs_the_client_address_nginx_saw(stack):
    agent = f"address-test/{random.randrange(10 ** 9)}"
    # A client cannot choose the logged address: nginx replaces X-Real-IP with the peer it saw.
    requests.get(f"{stack.url}/v1/models", headers={"User-Agent": agent, "X-Real-IP": "203.0.113.9"}, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        proxy_line = next((line for line in stack("logs", "--no-color", "proxy").splitlines() if agent in line), None)
        server_line = next((line for line in stack("logs", "--no-color", "embedding").splitlines() if agent in line),
                           None)
        if (proxy_line and server_line) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert proxy_line and server_line, (proxy_line, server_line)
    client = proxy_line.split("|", 1)[1].split()[2]  # "<time> <client> ..." after the service prefix
    assert f"] {client} \"GET /v1/models" in server_line and "203.0.113.9" not in server_line


def worker_rss(stack) -> dict[int, int]:
    """Resident KiB of each gunicorn worker (the children of the container's pid 1)."""
    script = ("import os\nfor p in filter(str.isdigit, os.listdir('/proc')):\n"
              "    s = open(f'/proc/{p}/status').read()\n"
              "    if '\\nPPid:\\t1\\n' in s: print(p, s.split('VmRSS:')[1].split()[0])")
    out = stack("exec", "-T", "embedding", "python", "-c", script)
    return {int(pid): int(kib) for pid, kib in (line.split() for line in out.splitlines())}


def test_worker_memory_stays_flat_under_mixed_load(stack, texts, output_dir):
    warmup, duration, stop = 45, 180, threading.Event()
    statuses: list[int] = []

    def client(seed: int) -> None:
        rng, session = random.Random(seed), requests.Session()
        while not stop.is_set():
            batch = rng.sample(texts, rng.randint(1, min(32, len(texts))))
            statuses.append(session.post(f"{stack.url}/v1/embeddings", json={"input": batch}, timeout=120).status_code)

    started, samples = time.monotonic(), []
    with ThreadPoolExecutor(3) as pool:
        clients = [pool.submit(client, seed) for seed in range(3)]
        try:
            while time.monotonic() - started < duration:
                time.sleep(10)
                samples.append((round(time.monotonic() - started), worker_rss(stack)))
        finally:
            stop.set()
        for done in clients:
            done.result(timeout=180)
    (output_dir / "proxy-soak-rss.json").write_text(json.dumps(samples))
    baseline = max(next(rss for seconds, rss in samples if seconds >= warmup).values())
    final = max(samples[-1][1].values())
    assert set(statuses) == {200} and len(statuses) > 100, sorted(set(statuses))
    assert final <= 1.10 * baseline, f"worker RSS {baseline} KiB after warm-up -> {final} KiB: {samples}"


def test_proxy_hides_its_version_and_answers_its_own_liveness(stack):
    response = requests.get(f"{stack.url}/health/proxy", timeout=10)
    assert response.json() == {"status": "ok"} and response.headers["Server"] == "nginx"
