"""The README's client examples, executed as written against a real server."""

import json
import re
import subprocess
import sys

import pytest

from harness.server import ROOT, GunicornServer

BLOCKS = re.findall(r"```(python|bash)\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
EXAMPLES = [(lang, code) for lang, code in BLOCKS if "localhost:7860" in code]


def run_example(lang, code, url):
    code = code.replace("http://localhost:7860", url)
    command = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_readme_has_curl_requests_openai_httpx_and_langchain_examples():
    text = "\n".join(code for _, code in EXAMPLES)
    for needle in ("curl ", "import requests", "from openai import OpenAI", "httpx.AsyncClient", "OpenAIEmbeddings("):
        assert needle in text


@pytest.fixture(scope="module")
def rag_readme_server(output_dir, tiny_reranker_dir):
    """The packaged model plus a cross-encoder served as `ranker`, for the RAG example."""
    with GunicornServer(output_dir / "gunicorn-readme-rag.log", workers=1, QUANTIZE="false",
                        MODEL_NAME=f"default,ranker={tiny_reranker_dir}") as server:
        yield server


@pytest.mark.parametrize("lang, code", EXAMPLES, ids=[code.split("\n")[0][:40] for _, code in EXAMPLES])
def test_readme_example_runs(request, lang, code):
    # Examples that rerank need a server with a reranker; the others run on the packaged model alone.
    server = request.getfixturevalue("rag_readme_server" if "rerank" in code else "minilm_server")
    result = run_example(lang, code, server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    if code.startswith("curl") and "/v1/embeddings" in code:
        assert len(json.loads(result.stdout)["data"]) == 2
