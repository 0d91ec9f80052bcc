"""The client examples of README.md and docs/, executed as written against a real server."""

import json
import re
import subprocess
import sys

import pytest

from harness.server import GunicornServer

from .test_docs import DOCS

# (page, language, code) of every python or bash block that talks to a server on localhost:7860.
BLOCKS = [(page.name, lang, code) for page in DOCS
          for lang, code in re.findall(r"```(python|bash)\n(.*?)```", page.read_text(), re.DOTALL)]
EXAMPLES = [(page, lang, code) for page, lang, code in BLOCKS if "localhost:7860" in code]


def run_example(lang, code, url):
    code = code.replace("http://localhost:7860", url)
    command = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)


def test_docs_have_curl_requests_openai_httpx_and_langchain_examples():
    text = "\n".join(code for _, _, code in EXAMPLES)
    for needle in ("curl ", "import requests", "from openai import OpenAI", "httpx.AsyncClient", "OpenAIEmbeddings("):
        assert needle in text


@pytest.fixture(scope="module")
def rag_readme_server(output_dir, tiny_reranker_dir):
    """The packaged model plus a cross-encoder served as `ranker`, for the RAG example."""
    with GunicornServer(output_dir / "gunicorn-readme-rag.log", workers=1, QUANTIZE="false",
                        MODEL_NAME=f"default,ranker={tiny_reranker_dir}") as server:
        yield server


@pytest.mark.parametrize("page, lang, code", EXAMPLES,
                         ids=[f"{page}: {code.splitlines()[0][:40]}" for page, _, code in EXAMPLES])
def test_docs_example_runs(request, page, lang, code):
    # Examples that rerank need a server with a reranker; the others run on the packaged model alone.
    server = request.getfixturevalue("rag_readme_server" if "rerank" in code else "minilm_server")
    result = run_example(lang, code, server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    if code.startswith("curl") and "/v1/embeddings" in code:
        assert len(json.loads(result.stdout)["data"]) == 2
