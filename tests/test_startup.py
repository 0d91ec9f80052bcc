"""Start-up failures stop gunicorn quickly with one clear message, never a retry loop or a hang."""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from harness.server import ROOT, GunicornServer, free_port, server_environ, wait_until


def run_gunicorn(port: int | None = None, **env):
    """Run gunicorn to its exit; the result also carries the master's pid."""
    started = time.monotonic()
    env = {**server_environ(), "EMBEDDING_SERVER_HOST": "127.0.0.1", "EMBEDDING_SERVER_PORT": str(port or free_port()),
           "EMBEDDING_SERVER_HEALTH_PORT": str(free_port()), "HF_HUB_OFFLINE": "1", **env}
    with subprocess.Popen([sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    result.pid = process.pid
    return result, time.monotonic() - started


def metrics_dirs_left(pid: int) -> list[str]:
    """The metrics directories a gunicorn master with this pid left behind."""
    return glob.glob(f"/dev/shm/embedding-metrics-{pid}-*") + glob.glob(f"{tempfile.gettempdir()}/embedding-metrics-{pid}-*")


def test_missing_model_directory_stops_the_server(tmp_path):
    result, seconds = run_gunicorn(MODEL_NAME=str(tmp_path / "no-such-model"))
    assert result.returncode != 0 and seconds < 30
    assert "no-such-model" in result.stderr and "not a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_directory_without_model_stops_the_server(tmp_path):
    result, _ = run_gunicorn(MODEL_NAME=str(tmp_path))
    assert result.returncode != 0
    assert "config.json" in result.stderr


@pytest.mark.parametrize("key, value, allowed", [("QUANTIZE", "maybe", "bf16"), ("POOL_TYPE", "cls", "mean"),
                                                 ("MODEL_ALIASES", "text-embedding-3-small=nope", "all-MiniLM-L6-v2")])
def test_bad_setting_stops_the_server_naming_the_key(key, value, allowed):
    result, _ = run_gunicorn(**{key: value})
    assert result.returncode != 0
    assert key in result.stderr and value in result.stderr and allowed in result.stderr


def test_hf_token_is_never_logged(tiny_model_dir, output_dir):
    with GunicornServer(output_dir / "gunicorn-token.log", workers=1, MODEL_NAME=str(tiny_model_dir),
                        HF_TOKEN="hf_do_not_print_me", LOG_LEVEL="debug") as server:
        log = server.log()
    assert "loaded" in log and "hf_do_not_print_me" not in log


def test_unreachable_hub_id_stops_the_server_naming_the_model():
    result, seconds = run_gunicorn(MODEL_NAME="nobody/no-such-model")
    assert result.returncode != 0 and seconds < 30
    assert "nobody/no-such-model" in result.stderr and "Hugging Face Hub" in result.stderr


def test_a_default_prompt_name_the_model_lacks_stops_the_server():
    result, seconds = run_gunicorn(MODEL_PROMPTS='{"all-MiniLM-L6-v2": {"default_prompt_name": "query"}}')
    assert result.returncode != 0 and seconds < 30
    assert "default_prompt_name 'query'" in result.stderr and "MODEL_PROMPTS" in result.stderr


def test_env_file_that_does_not_parse_stops_the_server_naming_the_line(tmp_path):
    env_file = tmp_path / "broken.env"
    env_file.write_text('EMBEDDING_SERVER_WORKERS=1\n\nAPI_KEY="sk-unterminated\n')
    result, seconds = run_gunicorn(ENV_FILE=str(env_file))
    assert result.returncode != 0 and seconds < 30
    assert f"configuration error: {env_file}, line 3: not understood" in result.stderr
    assert "sk-unterminated" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("text, words", [
    ("API_KEY=sk-secret\nLOG_LEVEL=info\nAPI_KEY=\n", ["line 3: API_KEY is set a second time"]),
    ("API_KEY=${UNDEFINED_SECRET}\n", ["line 1: API_KEY refers to ${UNDEFINED_SECRET}"]),
    ("api_key=sk-secret\n", ["did you mean API_KEY?"]),
    ("MODEL_PROMPTS=" + "[" * 100_000 + "\n", ["MODEL_PROMPTS is nested too deeply"]),
], ids=["key-twice", "unresolved", "lower-case", "deep-prompts"])
def test_env_file_that_would_drop_the_key_stops_the_server(tmp_path, text, words):
    env_file = tmp_path / "keyed.env"
    env_file.write_text(text)
    result, seconds = run_gunicorn(ENV_FILE=str(env_file))
    assert result.returncode != 0 and seconds < 30
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr and "sk-secret" not in result.stderr + result.stdout


def test_env_file_in_utf16_stops_the_server_naming_the_file(tmp_path):
    env_file = tmp_path / "utf16.env"
    env_file.write_text("EMBEDDING_SERVER_WORKERS=1\n", encoding="utf-16")
    result, _ = run_gunicorn(ENV_FILE=str(env_file))
    assert result.returncode != 0
    assert f"configuration error: {env_file} is not UTF-8 text" in result.stderr and "Traceback" not in result.stderr


def test_empty_environment_key_over_a_keyed_env_file_stops_the_server(tmp_path):
    env_file = tmp_path / "keyed.env"
    env_file.write_text("API_KEY=sk-secret\n")
    result, _ = run_gunicorn(ENV_FILE=str(env_file), API_KEY="")
    assert result.returncode != 0 and "API_KEY is empty in the environment" in result.stderr


def test_key_file_and_misspelt_settings_are_reported_at_start(tiny_model_dir, tmp_path, output_dir):
    import requests

    key_file = tmp_path / "api_key"
    key_file.write_text("sk-from-a-file\n")
    with GunicornServer(output_dir / "gunicorn-key-file.log", workers=1, MODEL_NAME=str(tiny_model_dir),
                        API_KEY_FILE=str(key_file), QUANTISE="int8") as server:
        refused = requests.get(f"{server.url}/v1/models", timeout=10)
        allowed = requests.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer sk-from-a-file"}, timeout=10)
        log = server.log()
    assert (refused.status_code, allowed.status_code) == (401, 200)
    assert "API key required (1 configured)" in log and "sk-from-a-file" not in log
    assert "configuration: the environment variable QUANTISE is not a setting: did you mean QUANTIZE?" in log


def test_missing_env_file_stops_the_server(tmp_path):
    result, _ = run_gunicorn(ENV_FILE=str(tmp_path / "nowhere.env"))
    assert result.returncode != 0 and "ENV_FILE" in result.stderr and "nowhere.env" in result.stderr


def test_port_in_use_stops_at_once_naming_the_settings():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result, _ = run_gunicorn(port=port)
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use (EMBEDDING_SERVER_PORT={port}" in result.stderr
    assert "Connection in use" not in result.stderr + result.stdout  # gunicorn's 5 retries never started
    assert metrics_dirs_left(result.pid) == []


def test_health_port_in_use_stops_at_once_naming_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result, _ = run_gunicorn(EMBEDDING_SERVER_HEALTH_PORT=str(port))
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use (EMBEDDING_SERVER_HEALTH_PORT={port}" in result.stderr


def test_a_model_that_cannot_be_found_leaves_no_metrics_directory(tmp_path):
    result, _ = run_gunicorn(MODEL_NAME=str(tmp_path / "no-such-model"))
    assert result.returncode != 0
    assert metrics_dirs_left(result.pid) == []


def test_a_worker_that_cannot_boot_leaves_no_metrics_directory(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    result, _ = run_gunicorn(MODEL_NAME=str(broken), EMBEDDING_SERVER_WORKERS="1")
    assert result.returncode != 0 and "cannot load model" in result.stderr + result.stdout
    assert "Booting worker" in result.stderr + result.stdout  # the failure came after the master made the directory
    assert metrics_dirs_left(result.pid) == []


def running(pid: int) -> bool:
    """Whether pid is a live process (an exited child waiting to be reaped is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_master_takes_its_workers_along_and_the_next_start_clears_its_metrics(tiny_model_dir, tmp_path,
                                                                                         output_dir):
    server = GunicornServer(output_dir / "gunicorn-killed-master.log", workers=2, MODEL_NAME=str(tiny_model_dir))
    server.start()
    master, workers = server.process.pid, server.worker_pids()
    try:
        server.process.kill()  # SIGKILL: no hook runs, nothing is cleaned up
        server.process.wait()
        # gunicorn alone notices a dead master between requests, after up to EMBEDDING_SERVER_TIMEOUT / 2 s.
        wait_until(lambda: not any(running(pid) for pid in workers), 15, "the orphaned workers to stop")
    finally:
        for pid in workers:
            if running(pid):
                os.kill(pid, 9)
        server.stop()
    assert len(workers) == 2 and metrics_dirs_left(master)
    result, _ = run_gunicorn(MODEL_NAME=str(tmp_path / "no-such-model"))  # any later start clears them
    assert result.returncode != 0 and metrics_dirs_left(master) == []
