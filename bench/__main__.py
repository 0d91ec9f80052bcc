"""One command for every benchmark: python -m bench [--quick]; prints markdown tables and saves them."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from harness.server import ROOT
from harness.workload import load_texts, make_requests, split_by_length

from .checkout import missing_commit, worktree
from .compare import compare_over_http, ratio_lines
from .modes import measure_modes
from .overhead import STAGES, measure_overhead
from .report import in_fresh_process, load_average, machine, table
from .roofline import ROOFLINE_HEADER, measure_roofline, roofline_row
from .servers import DEFAULT_CONFIG, RESULTS, server_sections

ALL_MODES = ("bf16", "int8", "int8-dynamic", "int8-dynamic-ffn-fp32")  # beside fp32, which every table includes
SECTIONS = ("roofline", "modes", "servers", "http", "overhead")
BASE_COMMIT = "18ce209"  # the last commit before padding-free batches: issue 10's "before"
# 100 requests: with fewer, the last large requests leave a worker idle while another finishes (a tail the
# perfectly balanced ceiling never has), which understates the server at saturation.
FULL = {"requests": 100, "concurrency": (1, 2, 4), "sweep": (DEFAULT_CONFIG, "2x1", "1x2"), "rounds": 2,
        "sizes": (1, 2048), "repeats": 15, "server_modes": ("fp32", "int8", "int8-dynamic", "int8-dynamic-ffn-fp32"),
        "roofline_requests": 8, "http_rounds": 3}
QUICK = {"requests": 24, "concurrency": (1, 4), "sweep": (DEFAULT_CONFIG,), "rounds": 1,
         "sizes": (1, 256), "repeats": 3, "server_modes": (), "roofline_requests": 4, "http_rounds": 1}


def mode_section(rounds: int) -> str:
    """In-process speed and fidelity of every mode."""
    from embedding_app.inference.quantize import FAITHFUL_MODES

    results = in_fresh_process(measure_modes, ALL_MODES, 2, rounds)
    rows = [[r.mode, "yes" if r.mode in FAITHFUL_MODES else "**no**", f"{r.long_speedup:.2f}×",
             f"{r.short_speedup:.2f}×", r.long_texts_per_s, f"{r.fidelity.min_cosine:.5f}",
             f"{r.fidelity.mean_cosine:.5f}", f"{r.fidelity.batch_invariance:.5f}", f"{r.fidelity.top10_overlap:.3f}"]
            for r in results]
    return table(["mode", "faithful", "speed long", "speed short", "long texts/s", "min cos", "mean cos",
                  "batch invariance", "top-10 overlap"], rows)


def roofline_section(plan: dict, emit) -> dict[str, float]:
    """Packed and padded batches on one thread against the GEMM measured in the same process; roofline per mode."""
    results = [in_fresh_process(measure_roofline, mode, plan["roofline_requests"], plan["rounds"])
               for mode in ("bf16", "fp32")]
    emit(f"Roofline (in-process, 1 thread, {plan['roofline_requests']} requests × 32 random texts, "
         f"{results[0].real_tokens} real tokens, half of them for the old rule; best of {plan['rounds']})",
         table(ROOFLINE_HEADER, [roofline_row(r) for r in results]) +
         "\n\nGEMM: `F.linear` 4096×384 by 1536×384 (the FFN's shape) on the same thread, in the same process; "
         "the roofline is its rate ÷ FLOP/token. FLOP/token counts the model's Linear layers only (Q, K, V, output, "
         "FFN in and out), so attention and the memory-bound ops are the gap to 100 %. The server runs its Linear "
         "layers through oneDNN with weights pre-packed at load (`embedding_app/inference/prepacked_linear.py`), which is faster than "
         "`F.linear` on this GEMM too: the last columns measure the roofline with that GEMM instead. Rates are per "
         "CPU-second of the one thread (process CPU time), so other processes on a shared machine hardly move them.")
    return {r.mode: r.tokens_per_s for r in results}


def http_section(workload, plan: dict, base: Path | None, base_label: str) -> str:
    """Batched vs one text per request, and this checkout vs base, over HTTP with default settings, alternately."""
    best = compare_over_http(workload, base, 4, plan["http_rounds"], RESULTS)
    rows = [[name.replace("base", base_label), rate] for name, rate in best.items()]
    return "\n\n".join([table(["server (default settings, 4 clients)", "texts/s"], rows), *ratio_lines(best, base_label)])


def overhead_section(texts, quantize: str, threads: int, sizes, repeats: int) -> str:
    """Per-stage milliseconds for each request size, and encoding's share of inference."""
    results = in_fresh_process(measure_overhead, texts, quantize, threads, sizes, repeats)
    rows = [[f"{size} input(s)", *(results[size][s] for s in STAGES),
             f"{100 * results[size]['encode float'] / results[size]['forward']:.1f}%",
             f"{100 * results[size]['encode base64'] / results[size]['forward']:.1f}%"] for size in sizes]
    return table(["request", *(f"{s} ms" for s in STAGES), "float ÷ forward", "base64 ÷ forward"], rows)


def base_checkout(options, stack: ExitStack, note) -> tuple[Path | None, str]:
    """The older checkout to compare against (--base, or a temporary worktree of --base-commit), and its label."""
    if options.base:
        return options.base, f"{options.base}"
    if not options.base_commit:
        return None, ""
    reason = missing_commit(ROOT, options.base_commit)
    if reason:
        note(f"Old vs new skipped: {reason}.")
        return None, ""
    return stack.enter_context(worktree(ROOT, options.base_commit)), options.base_commit


def parse_options():
    """The command line: --quick, which sections, and what to compare against."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller run (a few minutes) to check it works")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--base", type=Path, help="another checkout to compare against over HTTP")
    parser.add_argument("--base-commit", default=BASE_COMMIT,
                        help=f"commit to check out in a temporary git worktree when --base is not given "
                             f"(default {BASE_COMMIT}; '' skips old vs new)")
    options = parser.parse_args()
    options.sections = set(options.sections.split(","))
    if options.sections - set(SECTIONS):
        parser.error(f"--sections: {','.join(sorted(options.sections - set(SECTIONS)))} is not one of {SECTIONS}")
    return options


def run_sections(options, plan: dict, data: tuple, emit, note) -> None:
    """Every section asked for, in order; the roofline first, as the server tables refer to it."""
    workload, short = data
    rooflines = roofline_section(plan, emit) if "roofline" in options.sections else {}
    if "modes" in options.sections:
        emit("Quantization modes (in-process, 2 threads, batch 32; speed is vs fp32 in the same run)",
             mode_section(plan["rounds"]))
    if "servers" in options.sections:
        server_sections(workload, plan, rooflines, emit)
    if "http" in options.sections:
        with ExitStack() as stack:
            base, label = base_checkout(options, stack, note)
            emit(f"Over HTTP, side by side, alternating (best of {plan['http_rounds']})",
                 http_section(workload, plan, base, label))
    if "overhead" in options.sections:
        emit("Per-request overhead (in-process, QUANTIZE=true, 2 threads, texts <= 48 tokens; forward excludes pool)",
             overhead_section(short, "true", 2, plan["sizes"], plan["repeats"]))


def main() -> None:
    """Run the benchmarks, print the tables and save them to bench/results/report.md."""
    options = parse_options()
    plan = QUICK if options.quick else FULL
    RESULTS.mkdir(parents=True, exist_ok=True)
    from transformers import AutoTokenizer

    from embedding_app.inference.model_source import default_model_dir

    texts, tokenizer = load_texts(), AutoTokenizer.from_pretrained(default_model_dir())
    short, long = split_by_length(texts, tokenizer)
    workload = make_requests(short, long, plan["requests"])
    sections = [(f"Machine: {machine()}\n\nCommand: `{' '.join(['.venv/bin/python -m bench', *sys.argv[1:]])}`; "
                 f"workload: {len(workload)} requests, {sum(map(len, workload))} texts (1-32 per request, "
                 f"~30% of texts 128-256 tokens, the rest <= 48 tokens), base64 responses. Load average at the start: "
                 f"{load_average()}.")]
    started = time.monotonic()

    def note(text: str) -> None:
        sections.append(text)
        print(text + "\n", flush=True)
        (RESULTS / "report.md").write_text("\n\n".join(sections) + "\n")  # what is done survives a later failure

    def emit(title: str, body: str) -> None:
        note(f"### {title}\n\n{body}\n\n_{time.monotonic() - started:.0f} s into the run, load average "
             f"{load_average()}_")

    print(sections[0] + "\n", flush=True)
    run_sections(options, plan, (workload, short), emit, note)
    note(f"Whole run: {time.monotonic() - started:.0f} s, load average {load_average()} at the end.")
    print(f"saved {RESULTS / 'report.md'}")


if __name__ == "__main__":
    main()
