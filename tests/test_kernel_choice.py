"""Kernels and QUANTIZE=true's mode chosen by measurement at load: the choice follows the timings, stays faithful,
is cached per CPU, and is reported by the log, /health, /v1/models and /metrics."""

from __future__ import annotations

import json
import os
import statistics
import time

import pytest
import requests
import torch
from torch import nn

from embedding_app.config.choices import FAITHFUL_MODES
from embedding_app.config.settings import Settings
from embedding_app.inference import kernel_choice, loader
from embedding_app.inference.choice_cache import ChoiceCache, cache_key
from embedding_app.inference.kernel_choice import Choice, choose_kernels, pick
from embedding_app.inference.prepacked_linear import (
    F_LINEAR,
    GELU_APART,
    ONEDNN,
    fastest_linear,
)
from embedding_app.inference.quantize import candidates
from embedding_app.runtime import registry, thread_budget
from embedding_app.runtime.loading import load_models
from embedding_app.runtime.thread_budget import SharedCores, available_cores
from harness.server import GunicornServer

from .test_metrics import scrape


def fake_times(winner: str):
    """A best_times (or paired_times) that times nothing and reports `winner` (a kernel or mode name) as the fastest."""
    return lambda calls, rounds=0, warm_up=True: {name: 1.0 if name == winner else 2.0 for name in calls}


def layers() -> list:
    torch.manual_seed(0)
    return [fastest_linear(nn.Linear(64, 96), "none"), fastest_linear(nn.Linear(64, 96), "none"),
            fastest_linear(nn.Linear(96, 64))]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
@pytest.mark.parametrize("winner", [ONEDNN, GELU_APART, F_LINEAR])
def test_each_shape_keeps_the_kernel_measured_faster(monkeypatch, winner):
    monkeypatch.setattr(kernel_choice, "best_times", fake_times(winner))
    chosen = layers()
    kernels = choose_kernels(chosen, rows=32)
    # A layer without GELU has no "GELU apart" kernel: of its equally timed ones, the first (oneDNN) stays.
    assert kernels == {"float32 64x96 +gelu": winner, "float32 96x64": ONEDNN if winner == GELU_APART else winner}
    assert all(layer.prepacked == (winner != F_LINEAR) for layer in chosen)
    states = torch.randn(5, 64)
    with torch.inference_mode():  # whichever kernel runs, the layer computes the same thing
        assert torch.allclose(chosen[0](states), chosen[0].reference(states), atol=1e-5)
        assert torch.allclose(chosen[2](chosen[0](states)), chosen[2].reference(chosen[0](states)), atol=1e-5)


def recording(layer, rows: dict) -> None:
    """Make the layer's candidate kernels record, per (shape, kernel), the row count of every call."""
    kernels = layer.candidates()

    def record(name, kernel):
        return lambda states: rows.setdefault((layer.shape, name), []).append(len(states)) or kernel(states)
    layer.candidates = lambda: {name: record(name, kernel) for name, kernel in kernels.items()}


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_every_timed_call_runs_a_new_row_count():
    # As requests come: a kernel oneDNN builds per row count is paid in the timings, not hidden by reuse.
    rows, chosen = {}, layers()
    for layer in chosen:
        recording(layer, rows)
    choose_kernels(chosen, rows=32)
    assert {kernel for _, kernel in rows} == {ONEDNN, GELU_APART, F_LINEAR}
    for counts in rows.values():  # the warm-up and each timed call (a slow kernel stops after one): new row counts
        assert len(counts) >= 2 and len(set(counts)) == len(counts) and 32 - len(counts) < min(counts) <= 32


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
@pytest.mark.parametrize(("apart", "chosen"), [(0.98, ONEDNN), (0.95, GELU_APART)])
def test_a_kernel_about_as_fast_as_fused_onednn_does_not_replace_it(monkeypatch, apart, chosen):
    timings = {ONEDNN: 1.0, GELU_APART: apart, F_LINEAR: 2.0}  # seconds relative to fused oneDNN's
    monkeypatch.setattr(kernel_choice, "best_times", lambda calls, rounds=0, warm_up=True: {
        name: timings[name] for name in calls})
    assert choose_kernels(layers(), rows=32)["float32 64x96 +gelu"] == chosen


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_kernel_of_a_gelu_layer_computes_the_same(approximate, dtype):
    torch.manual_seed(0)
    layer = fastest_linear(nn.Linear(64, 96).to(dtype), approximate)
    states = (torch.randn(37, 64) * 3).to(dtype)  # GELU's curved part and both tails
    with torch.inference_mode():
        expected = layer.reference(states).float()
        outputs = {name: kernel(states).float() for name, kernel in layer.candidates().items()}
    if layer.prepacked:  # oneDNN here (bf16 too where the CPU runs it): all three kernels
        assert list(outputs) == [ONEDNN, GELU_APART, F_LINEAR]
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    for name, output in outputs.items():
        assert (output - expected).abs().max() <= tolerance * expected.abs().max(), name


def test_the_fastest_faithful_mode_wins():
    speeds = {"fp32": 100.0, "bf16": 180.0, "fast-but-wrong": 400.0}
    fidelity = {"fp32": 1.0, "bf16": 0.9999, "fast-but-wrong": 0.95}
    assert pick(speeds, fidelity, forced=None) == "bf16"
    assert pick(speeds, {**fidelity, "bf16": 0.99}, forced=None) == "fp32"
    assert pick(speeds, fidelity, forced="fast-but-wrong") == "fast-but-wrong"  # an operator's explicit choice


def test_of_modes_about_as_fast_the_most_faithful_wins():
    fidelity = {"fp32": 1.0, "bf16": 0.99993, "int8": 0.9996}
    assert pick({"fp32": 100.0, "bf16": 180.0, "int8": 183.0}, fidelity, forced=None) == "bf16"  # within 5 %
    assert pick({"fp32": 100.0, "int8": 104.5}, fidelity, forced=None) == "fp32"  # a near tie: the exact mode
    assert pick({"fp32": 100.0, "bf16": 180.0, "int8": 195.0}, fidelity, forced=None) == "int8"  # 8 % faster
    assert pick({"fp32": 100.0, "int8": 106.0}, fidelity, forced=None) == "int8"  # a real Zen 3's probe, 1.07-1.34x
    assert pick({"fp32": 100.0, "int8": 102.0}, fidelity, forced=None) == "fp32"


def test_a_slow_candidate_is_not_timed_again():
    calls = {"fast": 0, "slow": 0}

    def call(name, seconds):
        def run():
            calls[name] += 1
            time.sleep(seconds)
        return run

    times = kernel_choice.best_times({"fast": call("fast", 0.001), "slow": call("slow", 0.2)}, rounds=3)
    assert calls == {"fast": 5, "slow": 2} and times["slow"] > times["fast"]  # a warm-up call each, untimed
    kernel_choice.best_times({"fast": call("fast", 0.001), "slow": call("slow", 0.2)}, rounds=3, warm_up=False)
    assert calls == {"fast": 9, "slow": 3}


def scripted_seconds(monkeypatch, script: dict[str, list[float]]) -> tuple[dict, dict[str, int]]:
    """Calls named as in script whose timings are script's seconds in turn (none run), and how often each was timed."""
    clock, runs = {name: iter(seconds) for name, seconds in script.items()}, dict.fromkeys(script, 0)
    monkeypatch.setattr(kernel_choice, "_seconds", lambda call: call())

    def timing(name: str) -> float:
        runs[name] += 1
        return next(clock[name])
    return {name: (lambda name=name: timing(name)) for name in script}, runs


def test_a_mode_is_timed_by_its_median_round_against_the_first_not_by_one_lucky_call(monkeypatch):
    # int8 takes 0.8x fp32's time in three rounds of five; in the third a quiet moment speeds fp32 alone, and its best
    # call would make it look faster than int8. Each script holds exactly the calls that must run.
    calls, runs = scripted_seconds(monkeypatch, {"fp32": [1.0, 1.0, 0.7, 1.0, 1.0], "int8": [0.8, 1.1, 0.8, 0.8, 0.8],
                                                 "bf16": [9.0]})
    times = kernel_choice.paired_times(calls, rounds=5)
    assert runs == {"fp32": 5, "int8": 5, "bf16": 1}
    assert times["fp32"] == pytest.approx(1.0)  # its median round
    assert times["int8"] == pytest.approx(0.8)  # fp32's median times int8's median ratio to it
    assert times["bf16"] == 9.0  # > CUTOFF x the fastest: timed once
    assert pick({mode: 1 / seconds for mode, seconds in times.items()}, {"fp32": 1.0, "int8": 0.9995, "bf16": 1.0},
                forced=None) == "int8"


@pytest.mark.parametrize(("fp32", "int8", "expected"), [
    ([1.0, 1.1, 0.9], [0.5, 0.55, 0.45], 0.5),  # 2x fp32 in every round: no two more could change the order
    ([1.0, 1.1, 0.9, 1.0], [0.5, 1.1, 0.45, 0.5], 0.5),  # one round level with fp32: the median is open after three
    ([1.0] * 5, [1.04, 1.07, 1.03, 1.08, 1.05], 1.05),  # about the near-tie margin behind fp32: every round runs
], ids=["decisive", "open-after-three", "near-tie"])
def test_the_mode_rounds_stop_once_later_ones_could_not_change_the_choice(monkeypatch, fp32, int8, expected):
    calls, runs = scripted_seconds(monkeypatch, {"fp32": fp32, "int8": int8})
    times = kernel_choice.paired_times(calls, rounds=5)
    assert runs == {"fp32": len(fp32), "int8": len(int8)}
    assert times == pytest.approx({"fp32": statistics.median(fp32), "int8": expected})


def test_the_mode_probe_sends_queries_one_by_one_and_a_large_batch(tiny_source):
    engine = loader.load_engine(tiny_source, Settings(kernel_cache_dir=""), "fp32")
    sizes = []
    embed = engine.embed
    engine.embed = lambda sequences: sizes.append(len(sequences)) or embed(sequences)
    run, tokens = loader.probe(engine)
    vectors = run()
    texts = len(kernel_choice.PROBE_TEXTS)
    assert sizes == [1] * texts + [texts * kernel_choice.PROBE_COPIES] and len(vectors) == sizes[-1]
    warm_up, rows = loader.probe(engine, traffic=False)
    warm_up()
    assert sizes[-1] == texts and tokens == (kernel_choice.PROBE_COPIES + 1) * rows


@pytest.mark.parametrize("winner", candidates("true")[0])
def test_true_serves_the_mode_measured_fastest(monkeypatch, tiny_source, winner):
    monkeypatch.setattr(kernel_choice, "best_times", fake_times(winner))
    monkeypatch.setattr(kernel_choice, "paired_times", fake_times(winner))
    embedder = loader.load_engine(tiny_source, Settings(kernel_cache_dir=""), "true")
    assert embedder.info.mode == winner == embedder.choice.mode
    assert set(embedder.choice.tokens_per_second) == set(candidates("true")[0])
    assert embedder.choice.min_cosine["fp32"] == 1.0


def test_a_later_load_reads_the_cached_choice_without_measuring(monkeypatch, tiny_source, tmp_path):
    first = loader.load_engine(tiny_source, Settings(kernel_cache_dir=str(tmp_path)), "true")
    assert not first.choice.cached

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(loader, "_measure", no_measuring)
    again = loader.load_engine(tiny_source, Settings(kernel_cache_dir=str(tmp_path)), "true")
    assert again.choice.cached and again.info.mode == first.info.mode
    assert again.choice.kernels == first.choice.kernels
    assert [layer.prepacked for layer in again.linears()] == [layer.prepacked for layer in first.linears()]


def test_a_cached_choice_is_built_while_another_worker_holds_the_lock(monkeypatch, tiny_source, tmp_path):
    settings = Settings(kernel_cache_dir=str(tmp_path))
    first = loader.load_engine(tiny_source, settings, "true")
    monkeypatch.setattr("embedding_app.inference.choice_cache.LOCK_WAIT", 30)
    with ChoiceCache(str(tmp_path)).locked():  # another worker probing another model: this one need not wait
        began = time.monotonic()
        again = loader.load_engine(tiny_source, settings, "true")
    assert again.choice.cached and again.info.mode == first.info.mode
    assert time.monotonic() - began < 30


def test_the_cache_key_changes_with_what_changes_the_kernels(monkeypatch):
    base = cache_key("true", "model")
    assert cache_key("true", "model") == base
    assert cache_key("false", "model") != base and cache_key("true", "other model") != base
    other = "SSE41" if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2" else "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", other)  # oneDNN then runs other kernels
    assert cache_key("true", "model") != base


def test_the_cache_key_changes_with_the_inference_code(tmp_path):
    from embedding_app.inference.choice_cache import code_identity

    (tmp_path / "layer.py").write_text("SPEED = 1\n")
    before = code_identity(tmp_path)
    (tmp_path / "layer.py").write_text("SPEED = 2\n")  # an upgraded layer: the probe must run again
    assert code_identity.__wrapped__(tmp_path) != before
    assert code_identity(tmp_path) == before  # computed once per process


def test_a_worker_loads_and_probes_at_its_busy_share_then_runs_at_its_share(monkeypatch, tiny_source):
    for key in ("RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(key, raising=False)  # start_torch sets them: undone afterwards
    monkeypatch.setattr(thread_budget, "_current", thread_budget.current())
    monkeypatch.setattr(registry, "_registry", registry.installed())
    budget = SharedCores(2, cores=4)
    budget.attach(0)  # a worker alone: 4 threads now, 2 while both are busy
    before = torch.get_num_threads()
    try:
        engine = load_models(Settings(kernel_cache_dir=""), [tiny_source], budget).models[0].embedder
        assert engine.choice.threads == 2 and "probe at 2 threads: " in engine.choice.summary()
        assert torch.get_num_threads() == 4
        keys = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            keys.append(cache_key("true"))
        assert keys[0] != keys[1]  # a choice measured at other threads is not reused
    finally:
        torch.set_num_threads(before)


def test_an_unusable_cache_directory_only_costs_a_probe(tiny_source, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    embedder = loader.load_engine(tiny_source, Settings(kernel_cache_dir=str(blocker / "cache")), "true")
    assert embedder.info.mode in FAITHFUL_MODES and not embedder.choice.cached
    assert "not cached" in caplog.text


def test_a_corrupt_cache_file_is_ignored(tmp_path):
    (tmp_path / "kernel-choices.json").write_text("{not json")
    cache = ChoiceCache(str(tmp_path))
    assert cache.get("key") is None
    cache.put("key", Choice("fp32", {"float32 4x4": "F.linear"}))
    assert cache.get("key") == Choice("fp32", {"float32 4x4": "F.linear"}, cached=True)
    assert json.loads((tmp_path / "kernel-choices.json").read_text())["key"]["mode"] == "fp32"


def test_the_cache_file_keeps_only_the_newest_choices(tmp_path, monkeypatch):
    monkeypatch.setattr("embedding_app.inference.choice_cache.MAX_ENTRIES", 3)
    cache = ChoiceCache(str(tmp_path))
    for key in ("a", "b", "c", "d"):
        cache.put(key, Choice("fp32"))
    cache.put("b", Choice("bf16"))  # written again: now the newest
    cache.put("e", Choice("fp32"))
    assert list(json.loads((tmp_path / "kernel-choices.json").read_text())) == ["d", "b", "e"]
    assert cache.get("b").mode == "bf16" and cache.get("a") is None and cache.get("c") is None


@pytest.fixture(scope="module")
def measured_server(output_dir, tiny_model_dir, tmp_path_factory):
    """Two workers on the tiny model with QUANTIZE=true and an empty choice cache: the first one probes."""
    cache = tmp_path_factory.mktemp("kernel-cache")
    with GunicornServer(output_dir / "gunicorn-kernel-choice.log", workers=2, MODEL_NAME=str(tiny_model_dir),
                        QUANTIZE="true", KERNEL_CACHE_DIR=str(cache)) as server:
        yield server


def test_the_server_reports_the_measured_choice_everywhere(measured_server):
    health = requests.get(f"{measured_server.url}/health", timeout=10).json()
    compute = health["models"][0]["compute"]
    assert compute["mode"] == health["mode"] in FAITHFUL_MODES
    assert set(compute["probe"]) == set(candidates("true")[0])  # int8 where this CPU runs it at full precision
    assert compute["probe"][compute["mode"]]["min_cosine"] >= kernel_choice.MIN_COSINE
    card = requests.get(f"{measured_server.url}/v1/models", timeout=10).json()["data"][0]
    assert card["compute"]["mode"] == compute["mode"] and card["compute"]["kernels"] == compute["kernels"]
    samples = scrape(measured_server.url)
    modes = [dict(labels) for (name, labels), value in samples.items() if name == "embedding_model_mode" and value]
    assert {labels["mode"] for labels in modes} == {compute["mode"]} and len(modes) == 2  # one per worker
    assert any(name == "embedding_probe_tokens_per_second" for name, _ in samples)
    log = measured_server.log()
    # Timed at the threads each of the two workers runs while both are busy (auto: the cores shared).
    threads = max(1, available_cores() // 2)
    at = f" at {threads} thread{'s' if threads > 1 else ''}: "
    assert f"QUANTIZE=true -> {compute['mode']} (probe{at}" in log  # the first worker measured
    assert f"QUANTIZE=true -> {compute['mode']} (cached probe{at}" in log  # the second read its figures


def test_a_reranker_is_measured_too_and_its_scores_stay_faithful(tiny_reranker):
    reranker = loader.load_engine(tiny_reranker.source, Settings(kernel_cache_dir=""), "true")
    assert reranker.info.task == "rerank" and reranker.info.mode in FAITHFUL_MODES
    assert set(reranker.choice.tokens_per_second) == set(candidates("true")[0])
    assert reranker.choice.min_cosine[reranker.info.mode] >= kernel_choice.MIN_COSINE  # scores within 1e-3 of fp32


def test_agreement_is_the_lowest_cosine_of_vectors_and_the_largest_gap_of_scores():
    import numpy as np

    vectors = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert kernel_choice.agreement(vectors, vectors) == pytest.approx(1.0)
    assert kernel_choice.agreement(np.array([[1.0, 0.0], [1.0, 1.0]]), vectors) == pytest.approx(0.5 ** 0.5)
    assert kernel_choice.agreement(np.array([0.5, 0.2]), np.array([0.5, 0.25])) == pytest.approx(0.95)
