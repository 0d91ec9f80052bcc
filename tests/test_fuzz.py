"""schemathesis fuzzes the real server from its own /openapi.json with every check: no failures, no 5xx."""

import json
import subprocess
import sys

import pytest

from harness.server import GunicornServer

# Fixed seed: CI replays the same ~1000 cases; change it locally to explore new ones.
SEED = 20261125
MAX_EXAMPLES = 100
OPERATIONS = 11  # the packaged embedding model alone: no rerank routes
RAG_OPERATIONS = 14  # an embedding model and a reranker: every route
KEY = "fuzz-key"


def run_schemathesis(url: str, output_dir, name: str, *options: str) -> dict:
    """Run schemathesis against url's document; assert a clean exit and return its JSON report."""
    report = output_dir / f"{name}.json"
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
               "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
               "--request-timeout", "30", "--generation-database", "none", "--no-color",
               "--report", "json", "--report-json-path", str(report), *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=output_dir, check=False)
    (output_dir / f"{name}.txt").write_text(result.stdout + result.stderr)
    # Judged on the exit code and the machine-readable report, never on the console's wording.
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    run = json.loads(report.read_text())
    assert run["complete"] and run["exit_code"] == 0
    assert run["operations"]["errored"] == 0
    assert run["test_cases"]["generated"] >= MAX_EXAMPLES
    assert run["test_cases"]["with_failures"] == 0 and run["failures"] == [] and run["errors"] == []
    return run


def test_schemathesis_finds_no_failures(minilm_server, output_dir):
    run = run_schemathesis(minilm_server.url, output_dir, "schemathesis")
    assert run["operations"]["selected"] == run["operations"]["tested"] == OPERATIONS


@pytest.fixture(scope="module")
def reranking_server(output_dir, tiny_reranker_dir):
    """The packaged model and a cross-encoder behind an API key."""
    with GunicornServer(output_dir / "gunicorn-fuzz-rag.log", workers=1, QUANTIZE="false", API_KEY=KEY,
                        MODEL_NAME=f"default,ranker={tiny_reranker_dir}") as server:
        yield server


def test_schemathesis_finds_no_failures_with_a_reranker_and_a_key(reranking_server, output_dir):
    run = run_schemathesis(reranking_server.url, output_dir, "schemathesis-rag", "--header",
                           f"Authorization: Bearer {KEY}")
    assert run["operations"]["selected"] == run["operations"]["tested"] == RAG_OPERATIONS
