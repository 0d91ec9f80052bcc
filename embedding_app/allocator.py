"""Keep a worker's memory flat when every request brings new tensor shapes (glibc malloc and oneDNN caches)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# Measured (BENCHMARKS.md, "Worker memory"): with the defaults a bf16 worker grew 454 -> 1389 MB over 120 random
# requests, because oneDNN keeps compiled kernels per shape (primitive cache and ideep's LRU cache, 1024 entries
# each) and glibc's dynamic mmap threshold moves large freed tensors onto a heap that fragments. Small caches
# and a fixed threshold kept it at 456-459 MB with no measurable loss of speed.
ONEDNN_CACHES = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "LRU_CACHE_CAPACITY": "16"}
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLD = 1 << 20  # tensors of 1 MiB or more get their own mapping, returned to the OS when freed


def limit_worker_caches() -> bool:
    """Fix malloc's mmap threshold and shrink oneDNN's caches; call before torch is imported. False off glibc."""
    for key, value in ONEDNN_CACHES.items():
        os.environ.setdefault(key, value)  # an operator's own value wins
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False  # not glibc (musl, macOS): nothing to tune
    # Setting either threshold explicitly turns off glibc's dynamic adjustment of both.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, MMAP_THRESHOLD))
