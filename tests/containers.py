"""Fixtures for tests against the compose stack: the container engine, `docker compose` for one test project."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from harness.server import ROOT, free_port, server_environ

ENGINE_SCRIPT = ROOT.parent / "shared" / "tools" / "container-engine.sh"
COMPOSE_FILES = [["-f", "docker-compose.yml"], ["-f", "docker-compose.yml", "-f", "docker-compose.local-model.yml"]]
STACK_TIMEOUT = 780  # a fresh build takes ~95 s (both images ~3.5 min on a busy machine), under pytest's 900 s


def engine_env() -> dict[str, str]:
    """Set up the container engine (podman behind the docker CLI) and return the environment to reach it."""
    if os.geteuid() != 0:
        pytest.skip("not root: container-engine.sh sets up rootful podman and needs root (CI runs as root)")
    if not ENGINE_SCRIPT.is_file():
        pytest.fail(f"{ENGINE_SCRIPT} is missing: cannot set up a container engine to test the image")
    # From /: the podman service it starts keeps this working directory, and conmon fails ("Failed to get
    # working directory") once a checkout it was started from is deleted.
    result = subprocess.run(["bash", str(ENGINE_SCRIPT)], capture_output=True, text=True, timeout=420, cwd="/",
                            check=False)
    if result.returncode != 0:
        pytest.fail(f"container engine setup failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    env = server_environ()  # compose reads the checkout's .env itself
    for line in result.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def compose(request, output_dir):
    """Run `docker compose ...` for this module's own project, image tag and host port; output goes to a log."""
    env = engine_env()
    port = 17860 if port_free(17860) else free_port()
    module = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    env.update(COMPOSE_PROJECT_NAME=f"embedding-{module}-{os.getpid()}", EMBEDDING_IMAGE="embedding-server:test",
               EMBEDDING_PUBLISH=f"127.0.0.1:{port}")
    log = open(output_dir / f"container-{module}.log", "w")  # noqa: SIM115 - the stack's whole life, closed at its end

    def run(*args: str, timeout: float = 120, check: bool = True, files=COMPOSE_FILES[0], **more_env: str) -> str:
        log.write(f"$ docker compose {' '.join(files + list(args))}\n")
        log.flush()
        result = subprocess.run(["docker", "compose", *files, *args], cwd=ROOT, env={**env, **more_env},
                                capture_output=True, text=True, timeout=timeout, check=False)
        log.write(result.stdout + result.stderr)
        log.flush()
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    run.url = f"http://127.0.0.1:{port}"
    run.port = port
    run.env = env
    yield run
    log.close()


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
        compose("down", "-v", "--remove-orphans", check=False, timeout=240)
