"""The benchmark's pure parts: /metrics arithmetic, the model's FLOP count, the temporary worktree of a commit."""

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.checkout import missing_commit, worktree
from bench.load import LoadResult
from bench.roofline import (
    VARIANTS,
    Roofline,
    linear_flop_per_token,
    roofline_row,
)
from bench.scrape import Work, parse_work
from bench.servers import load_rows, parse_config
from embedding_app.config.settings import KERNEL_ENV

METRICS = """# HELP embedding_inputs_total Inputs embedded
# TYPE embedding_inputs_total counter
embedding_inputs_total{model="a"} 10.0
embedding_inputs_total{model="b"} 2.0
embedding_inputs_created{model="a"} 1.7e+09
# TYPE embedding_tokens_total counter
embedding_tokens_total{model="a"} 300.0
embedding_tokens_total{model="b"} 100.0
# TYPE embedding_padding_tokens_total counter
embedding_padding_tokens_total 40.0
# TYPE embedding_truncated_inputs_total counter
embedding_truncated_inputs_total{model="a"} 7.0
"""


def test_work_sums_every_model_and_ignores_other_counters():
    assert parse_work(METRICS) == Work(inputs=12.0, tokens=400.0, padding=40.0)


def test_padding_waste_is_padded_over_real_tokens_between_two_scrapes():
    work = parse_work(METRICS) - Work(inputs=2.0, tokens=200.0, padding=0.0)
    assert work.padded_per_real == pytest.approx(240 / 200)
    assert work.tokens_per_input == pytest.approx(20.0)


def test_a_server_without_a_padding_counter_counts_no_padding():
    text = "# TYPE embedding_tokens_total counter\nembedding_tokens_total{model=\"a\"} 5.0\n"
    assert parse_work(text).padded_per_real == 1.0


def test_flop_per_token_of_all_minilm_l6_v2():
    config = SimpleNamespace(num_hidden_layers=6, hidden_size=384, intermediate_size=1536)
    assert linear_flop_per_token(config) == 6 * 2 * (4 * 384 * 384 + 2 * 384 * 1536)  # 21.2 MFLOP


@pytest.fixture()
def repo(tmp_path):
    """A git repository with two commits of one file."""
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True,
                              text=True).stdout.strip()
    git("init", "-q")
    for text in ("old", "new"):
        (tmp_path / "file.txt").write_text(text)
        git("add", "file.txt")
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", text)
    return tmp_path, git("rev-parse", "--short", "HEAD~1"), git


def test_worktree_checks_out_the_commit_and_removes_itself(repo):
    path, old, git = repo
    with worktree(path, old) as checkout:
        assert (checkout / "file.txt").read_text() == "old"
        assert str(checkout) in git("worktree", "list")
    assert not checkout.exists()
    assert str(checkout) not in git("worktree", "list")
    assert (path / "file.txt").read_text() == "new"


def test_missing_commit_says_why(repo, tmp_path_factory):
    path, old, _ = repo
    assert missing_commit(path, old) is None
    assert "deadbee" in missing_commit(path, "deadbee")
    assert missing_commit(tmp_path_factory.mktemp("not-a-repo"), old) is not None


def test_roofline_row_gives_each_variant_as_a_share_of_the_gemm_roofline():
    rates = dict(zip(VARIANTS, (7000.0, 5000.0, 1750.0)))
    result = Roofline("bf16", gflops=212.3, prepacked_gflops=233.53, flop_per_token=21.23e6, real_tokens=9000,
                      rates=rates)
    assert result.tokens_per_s == pytest.approx(10_000)
    # the pre-packed GEMM is 1.1x F.linear: its roofline is 11 000 tokens/s, of which 7000 is 64 %
    assert roofline_row(result)[4:] == ["7000 (70 %)", "5000 (50 %)", "1750 (18 %)", "4.0×", "234", "64 %"]


def test_server_rows_show_padding_and_real_tokens_per_core_against_the_roofline():
    load = LoadResult(concurrency=4, texts_per_s=50.0, requests_per_s=5.0, p50_ms=1, p95_ms=2, p99_ms=3, errors=0)
    run = {"loads": [load], "ceiling": 55.0, "cores": 2, "work": Work(inputs=100, tokens=9000, padding=900)}
    [row] = load_rows("2x1", run, roofline=4500.0)
    assert row[9:] == ["0.91", "1.100", "2250", "50 %"]  # 50 texts/s x 90 tokens / 2 cores
    assert load_rows("2x1", run, roofline=None)[0][-1] == "-"


def test_configs_name_workers_and_threads_or_auto():
    assert parse_config("2x1") == (2, 1)
    assert parse_config("2xauto") == (2, None)


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "fma"}, "avx2; no avx512, vnni, bf16, amx"),  # AMD Zen 3
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, "avx2 avx512 vnni bf16; no amx"),  # AMD Zen 4 and 5
    ({"avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_bf16"}, "avx2 avx512 vnni bf16 amx"),  # Sapphire Rapids
])
def test_the_benchmark_names_the_cpus_instruction_sets(flags, expected):
    from bench.report import isa

    assert isa(flags) == expected


def test_the_benchmark_says_when_it_emulates_an_older_cpu(monkeypatch):
    from bench.report import emulation

    for name in (*KERNEL_ENV, "CPUID_MASK"):
        monkeypatch.delenv(name, raising=False)
    assert emulation() == ""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert emulation() == ", emulating an older CPU with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2"
    monkeypatch.setenv("CPUID_MASK", "avx2")
    assert emulation().endswith(" and ONNX Runtime's CPUID masked to AVX2 (bench.cpuid_mask)")


LEAF7 = """
#include <cpuid.h>
unsigned leaf7(int reg) { unsigned r[4]; __cpuid_count(7, 0, r[0], r[1], r[2], r[3]); return r[reg]; }
unsigned leaf7_1_eax(void) { unsigned a, b, c, d; __cpuid_count(7, 1, a, b, c, d); return a; }
"""
ASK = """
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
lib.leaf7.restype = lib.leaf7_1_eax.restype = ctypes.c_uint
print(json.dumps([lib.leaf7(1), lib.leaf7(2), lib.leaf7(3), lib.leaf7_1_eax()]))
"""


@pytest.mark.skipif(platform.machine() != "x86_64" or not (shutil.which("gcc") and shutil.which("objdump")),
                    reason="bench.cpuid_mask needs x86-64, gcc and objdump")
def test_the_cpuid_mask_hides_avx512_vnni_and_bf16_and_keeps_the_rest(tmp_path):
    from bench.cpuid_mask import CPUID, UD0, patch, prepare

    source, library = tmp_path / "leaf7.c", tmp_path / "leaf7.so"
    source.write_text(LEAF7)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    ask = [sys.executable, "-c", ASK, str(library)]
    real = json.loads(subprocess.run(ask, capture_output=True, text=True, check=True).stdout)
    assert patch(library) == 2 and CPUID not in library.read_bytes() and UD0 in library.read_bytes()
    env = {**os.environ, **prepare(tmp_path / "mask")}
    masked = json.loads(subprocess.run(ask, capture_output=True, text=True, check=True, env=env).stdout)
    ebx, ecx, edx, eax_1 = masked
    assert ebx == real[0] & ~(1 << 16 | 1 << 17 | 1 << 21 | 1 << 26 | 1 << 27 | 1 << 28 | 1 << 30 | 1 << 31)
    assert ebx & (1 << 5) == real[0] & (1 << 5)  # AVX2 as the CPU has it
    assert ecx == real[1] & ~(1 << 1 | 1 << 6 | 1 << 11 | 1 << 12 | 1 << 14)
    assert edx == real[2] & ~(1 << 2 | 1 << 3 | 1 << 8 | 1 << 22 | 1 << 23 | 1 << 24 | 1 << 25)
    assert eax_1 == real[3] & ~(1 << 4 | 1 << 5 | 1 << 23)  # no AVX-VNNI, AVX512-BF16 or AVX-IFMA
    assert (Path(env["PYTHONPATH"].split(os.pathsep)[0]) / "onnxruntime").is_dir()
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2" and env["FBGEMM_ENABLE_INSTRUCTIONS"] == "AVX2"


def test_a_benchmarks_extra_environment_is_key_value_items_and_names_a_bad_one():
    from bench.report import environment

    assert environment(["ONEDNN_PRIMITIVE_CACHE_CAPACITY=512", "", "GLIBC_TUNABLES=a=b"]) == {
        "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "512", "GLIBC_TUNABLES": "a=b"}
    for bad in ("QUANTIZE", "=1"):
        with pytest.raises(ValueError, match=f"not KEY=VALUE: '{bad}'"):
            environment(["A=1", bad])


def test_the_choice_benchmark_sets_the_pick_beside_every_variant():
    from bench.choice import run
    from embedding_app.config.choices import FAITHFUL_MODES

    report = run(threads=1, rounds=1, requests=1)
    assert "| chosen (QUANTIZE=true) |" in report and "chosen: " in report
    for mode in FAITHFUL_MODES:  # every faithful mode: F.linear at least, or its own int8 kernel
        assert f"| {mode}, F.linear |" in report or f"| {mode} |" in report
    assert "| 1.000 |" in report  # the fastest one, against which the others are given


def test_what_to_expect_runs_the_default_server_for_each_client_count_beside_a_tuned_one():
    from bench.expect import run

    report = run(requests_count=3, clients=[1, 2], rounds=1, env={"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"})
    assert "QUANTIZE=true -> " in report and "| 1 client |" in report and "| 2 clients |" in report
    assert "tuned: {'ONEDNN_PRIMITIVE_CACHE_CAPACITY': '64'}; worker RSS MB after the runs: default " in report
    cells = next(line.split("|")[2:-1] for line in report.splitlines() if line.startswith("| 1 client"))
    assert len(cells) == 6 and all(float(cell) > 0 for cell in cells)  # both servers answered both kinds; ratios


def test_the_startup_benchmark_sets_this_checkout_beside_a_base_commit(tiny_model_dir):
    from bench.startup import run

    report = run("HEAD", rounds=2, env={"MODEL_NAME": str(tiny_model_dir)})
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in report.splitlines()
            if line.startswith("| ") and not line.startswith("| checkout |")}
    assert set(rows) == {"HEAD", "this checkout"}
    assert all(float(value) > 0 for row in rows.values() for value in row)  # seconds and memory, measured
    assert "This checkout / HEAD (cached): all ready " in report and ", memory " in report


def test_each_engine_is_held_to_the_gemm_ceiling_of_its_own_precision():
    from bench.vs_onnx import precision

    assert [precision(engine) for engine in ("int8", "ORT int8 per-channel QInt8", "bf16", "fp32", "ORT fp32")] == [
        "int8", "int8", "bf16", "fp32", "fp32"]


def test_the_onnx_benchmark_sets_both_servers_beside_onnx_runtime():
    from bench.vs_onnx import RATIOS, SINGLES, run

    report = run(rounds=1, requests_per_round=1)
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in report.splitlines()
            if line.startswith("| ") and not line.startswith("| engine")}
    servers = {"server QUANTIZE=true", "server QUANTIZE=false"}
    assert {name.split(" (")[0] for name in rows} == servers | {f"{server}{SINGLES}" for server in servers} | {
        "ORT fp32", "ORT int8 per-channel QInt8"}
    assert all(float(row[0]) > 0 for row in rows.values())  # every engine timed, batched and one text per request
    # Each rate as a share of the Linear layers' ceiling: the fastest GEMM of its precision on this core.
    assert all(row[1].strip().endswith(" %") and float(row[1].strip()[:-2]) > 0 for row in rows.values())
    assert re.search(r"fp32: .+ [\d.]+ GOP/s, a ceiling of \d+ tokens/s; int8: .+ [\d.]+ GOP/s", report)
    fp32 = next(row for name, row in rows.items() if name.startswith("server QUANTIZE=false"))
    assert float(fp32[2]) > 0.9999  # the server's fp32 vectors, over HTTP, match sentence-transformers'
    assert report.count("x**") == 2 * len(RATIOS)  # issue 16's ratios for batched requests and for one text each
