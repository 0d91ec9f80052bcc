"""int8 against fp32, bf16 and ONNX Runtime on one thread, side by side: python -m bench.int8 [options in main].

Two tables: GOP/s of every int8 / fp32 / bf16 kernel on the model's GEMM shapes, and real tokens/s of whole
engines on 12 requests x 32 mixed real texts (tests/data/texts.json), timed alternately, best of `rounds`, with
their fidelity to fp32. Rates are per CPU-second of the one thread (process CPU time), so other processes on a
shared machine hardly move them. Like a server worker, it first fixes glibc's mmap threshold (16 MiB) and backs
those mappings with transparent huge pages where glibc and the kernel allow (embedding_app/runtime/allocator.py), so
torch allocates as in the server (report.as_a_worker); --default-malloc leaves glibc's defaults (ONNX Runtime has its
own arena either way). Run under `python -m bench.cpuid_mask --` to compare every engine on AVX2 code.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

SHAPES = ((4096, 384, 1536), (4096, 1536, 384), (1024, 384, 1152), (256, 384, 384))  # M tokens, K in, N out
MODES = ("fp32", "bf16", "int8", "int8-dynamic", "true")  # true: what QUANTIZE=true picks here
REQUESTS, TEXTS_PER_REQUEST = 12, 32
# The kernels of each precision among which the fastest sets the hardware's ceiling (bench.vs_onnx).
PRECISIONS = {"fp32": ("F.linear fp32 (MKL)", "oneDNN fp32 pre-packed", "ORT MatMul"),
              "bf16": ("F.linear bf16", "oneDNN bf16 pre-packed"),
              "int8": ("oneDNN int8 GEMM alone (u8 x s8 -> fp32)", "torch._int_mm (s8 x s8 -> s32)",
                       "fbgemm dynamic int8 (per-tensor)", "ORT MatMulInteger")}


def best_seconds(function, repeats: int = 8, rounds: int = 5) -> float:
    function()  # first call: kernel set-up
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeats):
            function()
        best = min(best, (time.process_time() - started) / repeats)
    return best


def kernels(m: int, k: int, n: int) -> dict:
    """Each candidate as a no-argument call on one M x K by N x K problem."""
    import torch
    from torch.nn import functional as F

    from embedding_app.inference.int8_linear import Int8Linear
    from embedding_app.inference.prepacked_linear import PrepackedLinear

    x, w, b = torch.randn(m, k), torch.randn(n, k) / k ** 0.5, torch.randn(n)
    xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()
    layer = Int8Linear(w, b, torch.arange(16))
    values = torch.randint(0, 256, (m, k), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dynamic = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(k, n)),
                                                         {torch.nn.Linear}, dtype=torch.qint8)[0]
    fp32, bf16 = PrepackedLinear(w, b), PrepackedLinear(wb, bb)
    return {"F.linear fp32 (MKL)": lambda: F.linear(x, w, b), "oneDNN fp32 pre-packed": lambda: fp32(x),
            "F.linear bf16": lambda: F.linear(xb, wb, bb), "oneDNN bf16 pre-packed": lambda: bf16(xb),
            "oneDNN int8 GEMM alone (u8 x s8 -> fp32)": lambda: layer.int_gemm(values),
            "int8 layer (quantize + GEMM + outliers)": lambda: layer(x),
            "torch._int_mm (s8 x s8 -> s32)": lambda: torch._int_mm(values.view(torch.int8), layer.wq.T),
            "fbgemm dynamic int8 (per-tensor)": lambda: dynamic(x),
            **_ort_kernels(m, k, n)}


def _ort_kernels(m: int, k: int, n: int) -> dict:
    """ONNX Runtime's MatMul (fp32) and MatMulInteger (u8 x s8) as one-node graphs."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"fp32": rng.standard_normal((k, n), dtype=np.float32),
               "int": rng.integers(-127, 128, (k, n), dtype=np.int8)}
    inputs = {"fp32": rng.standard_normal((m, k), dtype=np.float32),
              "int": rng.integers(0, 256, (m, k), dtype=np.uint8)}
    calls = {}
    for kind, op, a_type, y_type in (("fp32", "MatMul", TensorProto.FLOAT, TensorProto.FLOAT),
                                     ("int", "MatMulInteger", TensorProto.UINT8, TensorProto.INT32)):
        graph = helper.make_graph([helper.make_node(op, ["a", "w"], ["y"])], kind,
                                  [helper.make_tensor_value_info("a", a_type, [m, k])],
                                  [helper.make_tensor_value_info("y", y_type, [m, n])],
                                  [numpy_helper.from_array(weights[kind], "w")])
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                       .SerializeToString(), options, providers=["CPUExecutionProvider"])
        calls[f"ORT {op}"] = lambda s=session, a=inputs[kind]: s.run(None, {"a": a})
    return calls


def fastest_gemms(precisions: tuple[str, ...] = ("fp32", "int8"), m: int = 4096, k: int = 384,
                  n: int = 1536) -> dict[str, tuple[str, float]]:
    """Per precision asked (of PRECISIONS), its fastest kernel on one thread and that kernel's GOP/s."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            calls = kernels(m, k, n)
            rates = {name: 2 * m * k * n / best_seconds(calls[name], 4, 3) / 1e9
                     for precision in precisions for name in PRECISIONS[precision]}
    finally:
        torch.set_num_threads(threads)
    return {precision: max(((name, rates[name]) for name in PRECISIONS[precision]), key=lambda item: item[1])
            for precision in precisions}


def gemm_table() -> str:
    """GOP/s of every kernel on every shape, measured in one process, shapes in turn."""
    import torch

    torch.set_num_threads(1)
    rows = {}
    with torch.inference_mode():
        for m, k, n in SHAPES:
            for name, call in kernels(m, k, n).items():
                rows.setdefault(name, []).append(2 * m * k * n / best_seconds(call) / 1e9)
    head = "| kernel | " + " | ".join(f"{m}x{k} by {n}x{k}" for m, k, n in SHAPES) + " |"
    lines = [head, "|---" * (len(SHAPES) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{rate:.0f}" for rate in rates) + " |" for name, rates in rows.items()]
    return "\n".join(lines)


def _engines(model_dir: str) -> dict:
    """Every engine by name (--only=a,b: those whose name holds a or b, and fp32): the server's modes and ORT's."""
    from embedding_app.config.settings import Settings
    from embedding_app.inference.loader import load_engine
    from embedding_app.inference.model_source import resolve_model

    from .onnx_engine import OrtEmbedder, export

    source = resolve_model(model_dir, None)
    wanted = [arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("--only=")]  # e.g. --only=int8,ORT
    keep = (lambda name: any(part in name for part in wanted[0].split(","))) if wanted else (lambda name: True)
    engines = {f"server {mode}": load_engine(source, Settings(kernel_cache_dir=""), mode) for mode in MODES
               if mode == "fp32" or keep(f"server {mode}")}
    files = export(source.path, Path(tempfile.gettempdir()) / "bench-int8-onnx")
    return engines | {name: OrtEmbedder(path) for name, path in files.items() if keep(name)}


def end_to_end(rounds: int = 3) -> str:
    """Real tokens/s of each engine (alternating, best of rounds) and fidelity to fp32, as a markdown table."""
    import torch

    from harness.quality import measure_fidelity
    from harness.workload import DATA, fresh_rounds, load_texts

    torch.set_num_threads(1)
    engines = _engines("")
    fp32 = engines["server fp32"]
    texts = load_texts()
    rounds_of = [[fp32.inputs_for(request) for request in requests]
                 for requests in fresh_rounds(texts, rounds, REQUESTS, TEXTS_PER_REQUEST)]
    best = dict.fromkeys(engines, float("inf"))  # seconds per real token
    with torch.inference_mode():
        for requests in rounds_of:
            tokens = sum(len(ids) for request in requests for ids in request)
            for name, engine in engines.items():
                seconds = best_seconds(lambda e=engine, rs=requests: [e.embed(r) for r in rs], 1, 1)
                best[name] = min(best[name], seconds / tokens)
        passages = fp32.inputs_for(texts)
        queries = fp32.inputs_for(json.loads((DATA / "queries.json").read_text())["queries"])
        reference = fp32.embed(passages), fp32.embed(queries)
        quality = {name: measure_fidelity(engine, passages, queries, *reference) for name, engine in engines.items()}
    rates = {name: 1 / seconds for name, seconds in best.items()}
    lines = ["", (f"{REQUESTS} requests x {TEXTS_PER_REQUEST} mixed real texts per round, new ones every round "
                  f"({tokens} real tokens in the last), 1 thread, best of {rounds} alternating"), "",
             "| engine | real tokens/s | ÷ server int8 | min cos | mean cos | batch invariance | top-10 overlap |",
             "|---|---|---|---|---|---|---|"]
    for name, rate in rates.items():
        f = quality[name]
        lines.append(f"| {name} | {rate:.0f} | {rate / rates['server int8']:.2f}× | {f.min_cosine:.5f} | "
                     f"{f.mean_cosine:.5f} | {f.batch_invariance:.5f} | {f.top10_overlap:.3f} |")
    return "\n".join(lines)


def main() -> None:
    """Print both tables (--gemm-only: the kernel table alone; --e2e-only: the engines alone)."""
    from .report import as_a_worker

    if "--default-malloc" not in sys.argv:  # as a server worker does: tensors >= 16 MiB on transparent huge pages
        as_a_worker()
    if "--e2e-only" not in sys.argv:
        print(gemm_table(), flush=True)
    if "--gemm-only" not in sys.argv:
        print(end_to_end())


if __name__ == "__main__":
    main()
