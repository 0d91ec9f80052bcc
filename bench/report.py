"""What every benchmark section shares: markdown tables, the machine's description, a clean process to run in."""

from __future__ import annotations

import multiprocessing
import os
import platform
import re
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor


def environment(items: Iterable[str]) -> dict[str, str]:
    """KEY=VALUE items (a server's extra environment) as a dict; an item that is not KEY=VALUE is a ValueError."""
    items = [item for item in items if item]
    bad = [item for item in items if not item.split("=", 1)[0] or "=" not in item]
    if bad:
        raise ValueError(f"not KEY=VALUE: {bad[0]!r}")
    return dict(item.split("=", 1) for item in items)


def in_fresh_process(function, *args):
    """Run function in a new interpreter, so its torch threads and tokenizer pool start clean."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def as_a_worker() -> None:
    """Set this process's memory up as a server worker's (huge pages for tensors >= 16 MiB, small oneDNN caches),
    restarting it once where glibc must read the huge-pages tunable at start-up (as the gunicorn master does)."""
    import sys

    from embedding_app.runtime.allocator import limit_worker_caches, with_huge_pages

    restart = with_huge_pages(dict(os.environ))
    if restart is not None:
        os.execve(sys.executable, sys.orig_argv, restart)
    limit_worker_caches()


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats below 1 get 3 significant digits, larger ones one decimal."""
    def cell(value):
        return f"{value:.3g}" if isinstance(value, float) and abs(value) < 1 else (
            f"{value:.1f}" if isinstance(value, float) else str(value))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


# The instruction sets that decide which kernels win (BENCHMARKS.md has a table per class of CPU).
ISA_FLAGS = {"avx2": ("avx2",), "avx512": ("avx512f",), "vnni": ("avx512_vnni", "avx_vnni"),
             "bf16": ("avx512_bf16", "amx_bf16"), "amx": ("amx_tile",)}


def isa(flags: set[str]) -> str:
    """Which of avx2, avx512, vnni, bf16 and amx this CPU has, e.g. "avx2 avx512 vnni; no bf16, amx"."""
    have = [name for name, names in ISA_FLAGS.items() if flags & set(names)]
    missing = [name for name in ISA_FLAGS if name not in have]
    return " ".join(have) + (f"; no {', '.join(missing)}" if missing else "")


def machine() -> str:
    """CPU model and family, cores, instruction sets, torch's kernel level and software versions."""
    import torch

    from embedding_app.inference.quantize import cpu_flags

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(re.findall(r"^([^:\n]+):\s*(.+)$", lscpu, re.MULTILINE))
    model = fields.get("Model name", platform.processor())
    family = f"family {fields.get('CPU family', '?')} model {fields.get('Model', '?')}"
    return (f"{model} ({family}), {multiprocessing.cpu_count()} cores, {isa(cpu_flags())}, torch kernels "
            f"{torch.backends.cpu.get_cpu_capability()}{emulation()}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def emulation() -> str:
    """", emulating an older CPU with ..." naming the kernel caps set in the environment, or "" when none is."""
    from embedding_app.config.settings import kernel_environment

    caps = " ".join(f"{name}={value}" for name, value in kernel_environment().items() if value)
    # Each cap reaches its own library only; ONNX Runtime has none, and runs native unless bench.cpuid_mask masked it.
    masked = " and ONNX Runtime's CPUID masked to AVX2 (bench.cpuid_mask)" if os.environ.get("CPUID_MASK") else ""
    return f", emulating an older CPU with {caps}{masked}" if caps else ""


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())
