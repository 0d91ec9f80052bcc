"""Start-up failures stop gunicorn quickly with one clear message, never a retry loop or a hang."""

import os
import subprocess
import sys
import time

import pytest

from .server import ROOT, free_port


def run_gunicorn(**env):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "EMBEDDING_SERVER_HOST": "127.0.0.1",
                                             "EMBEDDING_SERVER_PORT": str(free_port()), "HF_HUB_OFFLINE": "1", **env})
    return result, time.monotonic() - started


def test_missing_model_directory_stops_the_server(tmp_path):
    result, seconds = run_gunicorn(MODEL_NAME=str(tmp_path / "no-such-model"))
    assert result.returncode != 0 and seconds < 30
    assert "no-such-model" in result.stderr and "not a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_directory_without_model_stops_the_server(tmp_path):
    result, _ = run_gunicorn(MODEL_NAME=str(tmp_path))
    assert result.returncode != 0
    assert "config.json" in result.stderr


@pytest.mark.parametrize("key, value, allowed", [("QUANTIZE", "maybe", "bf16"), ("POOL_TYPE", "cls", "mean")])
def test_bad_setting_stops_the_server_naming_the_key(key, value, allowed):
    result, _ = run_gunicorn(**{key: value})
    assert result.returncode != 0
    assert key in result.stderr and value in result.stderr and allowed in result.stderr


def test_hf_token_is_never_logged(tiny_model_dir, output_dir):
    from .server import GunicornServer

    with GunicornServer(output_dir / "gunicorn-token.log", workers=1, MODEL_NAME=str(tiny_model_dir),
                        HF_TOKEN="hf_do_not_print_me", LOG_LEVEL="debug") as server:
        log = server.log()
    assert "loaded" in log and "hf_do_not_print_me" not in log


def test_unreachable_hub_id_stops_the_server_naming_the_model():
    result, seconds = run_gunicorn(MODEL_NAME="nobody/no-such-model")
    assert result.returncode != 0 and seconds < 30
    assert "nobody/no-such-model" in result.stderr and "Hugging Face Hub" in result.stderr


def test_env_file_that_does_not_parse_stops_the_server_naming_the_line(tmp_path):
    env_file = tmp_path / "broken.env"
    env_file.write_text('EMBEDDING_SERVER_WORKERS=1\n\nAPI_KEY="sk-unterminated\n')
    result, seconds = run_gunicorn(ENV_FILE=str(env_file))
    assert result.returncode != 0 and seconds < 30
    assert f"configuration error: {env_file}, line 3: not understood" in result.stderr
    assert "sk-unterminated" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_missing_env_file_stops_the_server(tmp_path):
    result, _ = run_gunicorn(ENV_FILE=str(tmp_path / "nowhere.env"))
    assert result.returncode != 0 and "ENV_FILE" in result.stderr and "nowhere.env" in result.stderr
