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


@pytest.mark.parametrize("key, value, allowed", [("QUANTIZE", "maybe", "bf16"), ("POOL_TYPE", "cls", "mean"),
                                                 ("MODEL_ALIASES", "text-embedding-3-small=nope", "all-MiniLM-L6-v2")])
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


def test_a_default_prompt_name_the_model_lacks_stops_the_server():
    result, seconds = run_gunicorn(MODEL_PROMPTS='{"all-MiniLM-L6-v2": {"default_prompt_name": "query"}}')
    assert result.returncode != 0 and seconds < 30
    assert "default_prompt_name 'query'" in result.stderr and "MODEL_PROMPTS" in result.stderr
