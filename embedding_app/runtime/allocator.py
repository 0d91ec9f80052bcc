"""Keep a worker's memory flat when every request brings new tensor shapes (glibc malloc and oneDNN caches)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# Measured (BENCHMARKS.md, "Worker memory"): with the defaults a bf16 worker grew 454 -> 1389 MB over 120 random
# requests, because oneDNN keeps compiled kernels per shape (primitive cache and ideep's LRU cache, 1024 entries
# each) and glibc's dynamic mmap threshold moves large freed tensors onto a heap that fragments. Small caches
# and a fixed threshold keep it flat.
ONEDNN_CACHES = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "LRU_CACHE_CAPACITY": "16"}
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
# Tensors under 16 MiB (a 2600-token batch's largest activation) are reused from the heap; larger ones get their own
# mapping, returned when freed. Every fresh mapping is zeroed by the kernel at first touch: at 1 MiB a forward of 32
# texts had ~290 MB of them, and 16 MiB served 9-21 % more texts/s on batched requests (bf16 and AVX2 int8), at
# 10-25 MB more RSS after the runs and a plateau 60-130 MB higher under random requests of up to 64 texts, level over
# time (BENCHMARKS.md, "Heap reuse").
MMAP_THRESHOLD = 16 << 20


def limit_onednn_caches() -> None:
    """Put the small oneDNN cache sizes in the environment (before torch loads), unless an operator set their own."""
    for key, value in ONEDNN_CACHES.items():
        os.environ.setdefault(key, value)


def limit_worker_caches() -> bool:
    """Fix malloc's mmap threshold and shrink oneDNN's caches; call before torch is imported. False off glibc."""
    limit_onednn_caches()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False  # not glibc (musl, macOS): nothing to tune
    # Setting either threshold explicitly turns off glibc's dynamic adjustment of both.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, MMAP_THRESHOLD))


# Every tensor above the threshold is a fresh mapping, so each forward pays page faults on 4 KiB pages. Backed by
# transparent huge pages (glibc >= 2.35 madvises its mappings with this tunable) the same runs went, in-process on
# one Zen 5 core: fp32 5957 -> 7374 tokens/s, bf16 9777 -> 11138, int8 7095 -> 9448 (BENCHMARKS.md). glibc reads
# tunables once, when a process starts: the gunicorn master re-executes itself with it, and its workers inherit it.
HUGE_PAGES = "glibc.malloc.hugetlb=1"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def with_huge_pages(environ: dict[str, str], thp_setting: str = THP_SETTING) -> dict[str, str] | None:
    """The environment to restart this process in so that malloc uses transparent huge pages, or None when it
    already does, cannot (not glibc 2.35+, THP off) or an operator chose a hugetlb tunable of their own."""
    import platform

    tunables = environ.get("GLIBC_TUNABLES", "")
    libc, version = platform.libc_ver()
    if "glibc.malloc.hugetlb" in tunables or libc != "glibc" or tuple(map(int, version.split(".")[:2])) < (2, 35):
        return None
    try:
        with open(thp_setting) as setting:
            if "[never]" in setting.read():
                return None
    except OSError:
        return None
    return {**environ, "GLIBC_TUNABLES": f"{tunables}:{HUGE_PAGES}" if tunables else HUGE_PAGES}
