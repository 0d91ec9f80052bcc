"""deploy/k8s: schema-valid manifests (no cluster here) whose pieces fit together and fit the measured worker size."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.server import ROOT

MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
# Peak resident memory of one worker serving all-MiniLM-L6-v2 in fp32 with 8192-token batches (measured).
WORKER_PEAK_MIB = 700


def load(kind: str) -> dict:
    """The one manifest of this kind."""
    docs = [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc["kind"] == kind]
    assert len(docs) == 1, kind
    return docs[0]


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1)


def test_manifests_pass_strict_schema_validation():
    tool = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    assert tool, "kubernetes-validate not installed (see requirements-dev.txt)"
    result = subprocess.run([tool, "--strict", *map(str, MANIFESTS)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") + result.stderr.count("passed") == len(MANIFESTS)


def container(name: str) -> dict:
    """The Deployment's container of this name."""
    containers = load("Deployment")["spec"]["template"]["spec"]["containers"]
    return next(item for item in containers if item["name"] == name)


def env(item: dict) -> dict[str, str]:
    return {variable["name"]: variable.get("value") for variable in item.get("env", [])}


@pytest.fixture(scope="module")
def server_container() -> dict:
    return container("server")


@pytest.fixture(scope="module")
def proxy_container() -> dict:
    return container("proxy")


def test_probes_ask_the_server_for_health_through_the_proxy(server_container, proxy_container):
    proxy_port = proxy_container["ports"][0]["name"]
    paths = {"startupProbe": "/health", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
    for probe, path in paths.items():
        # gunicorn's master answers them (never a busy worker): liveness is the process, readiness loaded workers.
        assert server_container[probe]["httpGet"] == {"path": path, "port": proxy_port}
        assert server_container[probe]["timeoutSeconds"] <= 3
        # The proxy's own probes ask nginx alone: a busy or restarting server must not restart nginx.
        if probe in proxy_container:
            assert proxy_container[probe]["httpGet"]["path"] == "/health/proxy"


def test_proxy_sends_probes_to_the_servers_health_port(proxy_container):
    port = load("ConfigMap")["data"].get("EMBEDDING_SERVER_HEALTH_PORT", "7861")
    assert env(proxy_container)["PROXY_HEALTH_UPSTREAM"] == f"127.0.0.1:{port}"


def test_only_the_proxy_is_reachable_from_outside_the_pod(server_container, proxy_container):
    assert env(server_container)["EMBEDDING_SERVER_HOST"] == "127.0.0.1" and "ports" not in server_container
    service_port = load("Service")["spec"]["ports"][0]["targetPort"]
    assert service_port == proxy_container["ports"][0]["name"]
    annotations = load("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == proxy_container["ports"][0]["containerPort"]


def test_proxy_forwards_to_the_servers_port_with_the_servers_limits(proxy_container):
    port = load("ConfigMap")["data"].get("EMBEDDING_SERVER_PORT", "7860")
    assert env(proxy_container)["PROXY_UPSTREAM"] == f"127.0.0.1:{port}"
    assert proxy_container["envFrom"] == [{"configMapRef": {"name": load("ConfigMap")["metadata"]["name"]}}]


def test_pod_stops_after_the_longest_request(server_container):
    pod = load("Deployment")["spec"]["template"]["spec"]
    timeout = int(load("ConfigMap")["data"]["EMBEDDING_SERVER_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > timeout + 5 + 10  # preStop sleep, then a request that runs to the limit


def test_resources_fit_workers_times_threads(server_container):
    config = load("ConfigMap")["data"]
    workers, threads = int(config["EMBEDDING_SERVER_WORKERS"]), config["EMBEDDING_SERVER_THREADS_PER_WORKER"]
    resources = server_container["resources"]
    if threads == "auto":  # the workers share the limit's cores, one each when all are busy: no fewer than workers
        assert float(resources["limits"]["cpu"]) == float(resources["requests"]["cpu"]) >= workers
    else:
        assert float(resources["requests"]["cpu"]) == workers * int(threads)
    assert mebibytes(resources["limits"]["memory"]) >= workers * WORKER_PEAK_MIB


def test_pods_run_as_the_images_non_root_user():
    pod = load("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for dockerfile in ("Dockerfile", "deploy/nginx/Dockerfile"):  # the server's image and the proxy's
        assert f"USER {pod['securityContext']['runAsUser']}" in (ROOT / dockerfile).read_text()


def test_service_and_autoscaler_target_the_deployment():
    deployment, service, hpa = load("Deployment"), load("Service"), load("HorizontalPodAutoscaler")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_model_volume_is_prepared_by_the_job_where_the_server_reads_it():
    claim = load("PersistentVolumeClaim")["metadata"]["name"]
    job = load("Job")["spec"]["template"]["spec"]
    pod = load("Deployment")["spec"]["template"]["spec"]
    for spec in (job, pod):
        assert claim in [v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]]
    out = job["containers"][0]["command"][job["containers"][0]["command"].index("--out") + 1]
    assert load("ConfigMap")["data"]["MODEL_NAME"] == out
