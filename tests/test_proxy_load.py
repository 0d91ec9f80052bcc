"""The project's nginx configuration run locally in front of real gunicorn: overload, heavy requests, stalled floods.

nginx from deploy/nginx/start.sh (as in the image) with gunicorn's tiny-model workers behind it, all on this host.
Attackers connect from 127.0.0.2, normal clients from 127.0.0.1: nginx sees two client addresses, as it would see
two hosts. Needs nginx on PATH (apt-get install nginx gettext-base); skipped without it.
"""

from __future__ import annotations

import http.client
import resource
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Self

import openai
import pytest
import requests

from harness.proxy import LocalProxy

from .test_faults import slow_input, slow_server

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("curl") is None,
                                reason="nginx or curl is not installed")
ATTACKER = "127.0.0.2"
STALLED = 4600


@pytest.fixture(scope="module")
def server(tiny_model_dir, output_dir):
    """Real gunicorn: 2 one-thread workers, the tiny model computing in 64-token batches, 20 s timeout."""
    with slow_server(output_dir / "gunicorn-proxy-load.log", str(tiny_model_dir), 20) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(server, output_dir):
    """nginx with the image's defaults in front of the server."""
    with LocalProxy(server, output_dir / "nginx-proxy-load.log") as proxy:
        yield proxy


class HealthWatch:
    """Polls /health through the proxy with curl (timed by curl: this process's busy client threads cannot delay
    it); keeps the slowest answer and any failure."""

    def __init__(self, url: str):
        self.url, self.slowest, self.failures, self.stop = f"{url}/health", 0.0, [], threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stop.is_set():
            probe = subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "10", "-w", "%{http_code} %{time_total}",
                                    self.url], capture_output=True, text=True, check=False)
            status, seconds = probe.stdout.split()
            self.slowest = max(self.slowest, float(seconds))
            if status != "200":
                self.failures.append(status)
            time.sleep(0.2)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def sdk_calls(url: str, clients: int, calls: int, body: dict) -> list[tuple[str, float]]:
    """`clients` OpenAI SDK clients (default retries) making `calls` calls each: (outcome, seconds) per call."""
    def client(_: int) -> list[tuple[str, float]]:
        sdk, outcomes = openai.OpenAI(base_url=f"{url}/v1", api_key="unused"), []
        for _ in range(calls):
            started = time.monotonic()
            try:
                sdk.embeddings.create(model="tiny", **body)
                outcome = "ok"
            except openai.APIStatusError as exc:
                outcome = f"{exc.status_code} {exc.body.get('code') if isinstance(exc.body, dict) else exc.body}"
            except openai.APIError as exc:
                outcome = type(exc).__name__
            outcomes.append((outcome, time.monotonic() - started))
        return outcomes

    with ThreadPoolExecutor(clients) as pool:
        return [outcome for outcomes in pool.map(client, range(clients)) for outcome in outcomes]


def test_sixteen_sdk_clients_with_default_retries_all_succeed(proxy, server):
    with HealthWatch(proxy.url) as health:
        outcomes = sdk_calls(proxy.url, 16, 10, slow_input(1500))
    failed = [outcome for outcome, _ in outcomes if outcome != "ok"]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} calls succeeded; slowest call "
          f"{max(s for _, s in outcomes):.1f}s; slowest /health {health.slowest:.2f}s")
    assert len(failed) <= len(outcomes) // 100, failed
    assert health.failures == [] and health.slowest < 2


def test_two_hundred_sdk_clients_fail_fast_and_clearly_and_the_server_stays_healthy(proxy, server):
    pids = server.worker_pids()
    with HealthWatch(proxy.url) as health:
        outcomes = sdk_calls(proxy.url, 200, 1, slow_input(500))
    failed = [(outcome, seconds) for outcome, seconds in outcomes if outcome != "ok"]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} calls succeeded; failures: "
          f"{sorted({outcome for outcome, _ in failed})}, slowest failure "
          f"{max((s for _, s in failed), default=0):.1f}s; slowest /health {health.slowest:.2f}s")
    assert {outcome for outcome, _ in failed} <= {"503 server_overloaded", "429 rate_limit_exceeded"}
    # Each answer comes at once; the SDK waits the Retry-After the backlog calls for (at most 60 s) twice.
    assert max((seconds for _, seconds in failed), default=0) < 60
    assert health.failures == [] and health.slowest < 2
    assert server.worker_pids() == pids
    assert requests.get(f"{proxy.url}/readyz", timeout=5).status_code == 200


def test_heavy_requests_never_time_out_at_the_proxy_and_health_answers(proxy, server):
    # Each takes ~4 s of a worker; 8 on 2 workers: the last would finish after ~16 s, near the 20 s time limit.
    with HealthWatch(proxy.url) as health, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: requests.post(f"{proxy.url}/v1/embeddings", json=slow_input(20_000),
                                                        timeout=120), range(8)))
    statuses = [answer.status_code for answer in answers]
    print(f"statuses {statuses}; slowest /health {health.slowest:.2f}s")
    assert set(statuses) <= {200, 503} and 200 in statuses
    for answer in answers:
        if answer.status_code == 503:  # refused before computing, with a delay to retry after
            assert answer.json()["error"]["code"] == "server_overloaded" and int(answer.headers["Retry-After"]) >= 1
    assert health.failures == [] and health.slowest < 2


def open_stalled(port: int, count: int, head: bytes) -> list[socket.socket]:
    """count connections from the attacker's address, each sending `head` at once and then nothing."""
    # At once: a connection that has sent nothing is one nginx may close to make room ("reusing connections").
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((ATTACKER, 0))
        sock.settimeout(1)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(head)
        except OSError:  # refused, reset or not accepted in time: nginx did not take it
            pass
        sockets.append(sock)
    return sockets


@pytest.mark.parametrize("head", [
    pytest.param(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n", id="headers"),
    pytest.param(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000\r\n\r\n{", id="body"),
])
def test_thousands_of_stalled_connections_from_one_address_do_not_deny_others(proxy, head):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < STALLED + 1000:
        pytest.skip(f"RLIMIT_NOFILE {hard} leaves no room for {STALLED} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, STALLED + 1000), hard))
    sockets = open_stalled(proxy.port, STALLED, head)
    slowest, failures = 0.0, []
    try:
        ends = time.monotonic() + 14  # past client_header_timeout (10 s): the body variant keeps trickling
        trickled = time.monotonic()
        while time.monotonic() < ends:
            started = time.monotonic()
            try:
                response = requests.post(f"{proxy.url}/v1/embeddings", json={"input": "a normal client"}, timeout=5)
                status = response.status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            slowest = max(slowest, time.monotonic() - started)
            if status != 200:
                failures.append(status)
            if b"Content-Length" in head and time.monotonic() - trickled > 4:  # a byte per socket every 4 s
                trickled = time.monotonic()
                for sock in sockets:
                    try:
                        sock.send(b" ")
                    except OSError:
                        pass
            time.sleep(0.3)
    finally:
        for sock in sockets:
            sock.close()
    print(f"{STALLED} stalled connections ({head[-12:]!r}): slowest normal request {slowest:.2f}s, "
          f"failures {failures[:5]}")
    assert failures == [] and slowest < 2
    assert "worker_connections are not enough" not in proxy.log()


def test_an_address_over_its_rate_gets_a_clear_429_while_another_address_is_served(server, output_dir):
    # 1 request a second with a burst of 2: of 12 sent at once from one address most are refused at the proxy.
    with LocalProxy(server, output_dir / "nginx-proxy-rate.log", PROXY_CLIENT_RATE="1") as limited:
        answers = [requests.get(f"{limited.url}/v1/models", timeout=10) for _ in range(12)]
        refused = [answer for answer in answers if answer.status_code == 429]
        assert refused and any(answer.status_code == 200 for answer in answers)
        for answer in refused:
            assert answer.headers["Retry-After"] == "1"
            assert answer.json()["error"]["code"] == "rate_limit_exceeded"  # OpenAI-shaped, not nginx's HTML page
        other = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=10, source_address=(ATTACKER, 0))
        other.request("GET", "/v1/models")
        assert other.getresponse().status == 200  # another address has its own budget
        other.close()
