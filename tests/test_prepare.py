"""python -m embedding_app.inference.prepare: a model directory that workers load from disk, made offline from local ones."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from embedding_app.config.settings import Settings
from embedding_app.inference.loader import load_engine
from embedding_app.inference.model_source import ModelSourceError, resolve_model
from embedding_app.inference.prepare import prepare
from harness.server import ROOT

from .conftest import TINY_MAX_TOKENS


def test_prepare_copies_weights_tokenizer_and_sentence_transformers_config(tiny_model_dir, tmp_path):
    out = prepare(str(tiny_model_dir), tmp_path / "tiny")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json",
                 "sentence_bert_config.json"):
        assert (out / name).is_file(), name
    source = resolve_model(str(out), None)
    assert (source.pooling, source.max_seq_length, source.served_name) == ("mean", TINY_MAX_TOKENS, "tiny")


def test_prepared_files_are_readable_by_other_users(tiny_model_dir, tmp_path):
    out = prepare(str(tiny_model_dir), tmp_path / "tiny", quantize="bf16")
    assert all(path.stat().st_mode & 0o004 for path in out.rglob("*"))


def test_prepare_default_copies_the_packaged_model(tmp_path):
    source = resolve_model(str(prepare("default", tmp_path / "all-MiniLM-L6-v2")), None)
    assert (source.served_name, source.max_seq_length) == ("all-MiniLM-L6-v2", 256)


def test_prepare_refuses_a_non_empty_directory_without_force(tiny_model_dir, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ModelSourceError, match="not empty"):
        prepare(str(tiny_model_dir), tmp_path)
    assert prepare(str(tiny_model_dir), tmp_path, force=True) == tmp_path


def test_bf16_stored_model_serves_like_bf16_at_load(tiny_model_dir, tmp_path, tiny_embedder):
    half = prepare(str(tiny_model_dir), tmp_path / "half", quantize="bf16")
    assert (half / "model.safetensors").stat().st_size < 0.6 * (tiny_model_dir / "model.safetensors").stat().st_size
    ids = tiny_embedder.inputs_for(["prepared once", "loaded by every worker"])
    original = load_engine(resolve_model(str(tiny_model_dir), None), Settings(), "bf16").embed(ids)
    stored = load_engine(resolve_model(str(half), None), Settings(), "bf16").embed(ids)
    np.testing.assert_allclose(stored, original, atol=1e-6)


def test_cli_prepares_and_says_how_to_serve(tiny_model_dir, tmp_path):
    result = subprocess.run([sys.executable, "-m", "embedding_app.inference.prepare", str(tiny_model_dir), "--out",
                             str(tmp_path / "m")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert f"MODEL_NAME={tmp_path / 'm'}" in result.stdout


def test_cli_fails_clearly_on_a_missing_directory(tmp_path):
    result = subprocess.run([sys.executable, "-m", "embedding_app.inference.prepare", "/no/such/model", "--out",
                             str(tmp_path / "m")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 1
    assert "looks like a path but is not a directory" in result.stderr


def test_if_missing_keeps_a_prepared_directory(tiny_model_dir, tmp_path):
    out = prepare(str(tiny_model_dir), tmp_path / "m")
    (out / "marker").write_text("kept")
    assert prepare("/no/such/model", out, if_missing=True) == out
    assert (out / "marker").read_text() == "kept"


def test_a_failed_prepare_leaves_no_partial_directory(tmp_path):
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(ModelSourceError, match="config.json"):
        prepare(str(tmp_path / "not-a-model"), tmp_path / "m")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["not-a-model"]


def run_prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embedding_app.inference.prepare", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def test_cli_if_missing_says_the_model_was_already_there(tiny_model_dir, tmp_path):
    out = prepare(str(tiny_model_dir), tmp_path / "m")
    result = run_prepare(str(tiny_model_dir), "--out", str(out), "--if-missing")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"already prepared, left as it is: {out}")


def test_cli_prints_no_progress_bars(tiny_model_dir, tmp_path):
    result = run_prepare(str(tiny_model_dir), "--out", str(tmp_path / "m"), "--quantize", "bf16")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"prepared: {tmp_path / 'm'}")
    assert "it/s]" not in result.stderr and "%|" not in result.stderr


def test_a_reranker_is_prepared_with_its_head_and_scores_the_same(tiny_reranker_dir, tmp_path, tiny_reranker):
    from embedding_app.inference.loader import load_engine

    out = prepare(str(tiny_reranker_dir), tmp_path / "ranker", quantize="bf16")
    source = resolve_model(str(out), None)
    assert source.task == "rerank"
    engine = tiny_reranker.embedder
    pairs, _ = engine.pairs(engine.tokenize(["query"])[0], engine.tokenize(["one document", "another one"]), True)
    original = load_engine(tiny_reranker.source, Settings(), "bf16").score(pairs)
    np.testing.assert_allclose(load_engine(source, Settings(), "bf16").score(pairs), original, atol=1e-6)
