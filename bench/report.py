"""What every benchmark section shares: markdown tables, the machine's description, a clean process to run in."""

from __future__ import annotations

import multiprocessing
import os
import platform
import re
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor


def in_fresh_process(function, *args):
    """Run function in a new interpreter, so its torch threads and tokenizer pool start clean."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def table(header: list[str], rows: list[list]) -> str:
    """A markdown table; floats below 1 get 3 significant digits, larger ones one decimal."""
    def cell(value):
        return f"{value:.3g}" if isinstance(value, float) and abs(value) < 1 else (
            f"{value:.1f}" if isinstance(value, float) else str(value))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def machine() -> str:
    """CPU model, cores, bf16 support and software versions."""
    import torch

    from embedding_app.quantize import cpu_flags, native_bf16_flag

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = re.search(r"Model name:\s*(.+)", lscpu)
    return (f"{model.group(1) if model else platform.processor()}, {multiprocessing.cpu_count()} cores, "
            f"native bf16: {native_bf16_flag(cpu_flags()) or 'no'}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())
