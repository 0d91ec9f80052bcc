"""The int8 layer's activation quantization as one compiled loop (numba), where torch needs a pass per operation.

torch ran it as scale-and-shift, round, clamp and a uint8 copy, each a pass over the activations, plus small ops
for the side GEMM's inputs: 0.11 ms for 370 rows x 384 columns on one Zen 5 core, 10x what this loop takes
(BENCHMARKS.md, "The quantization pass compiled"). The loop also finds each row's range and gathers its outlier
columns, which torch did in five more passes (BENCHMARKS.md, "The quantization pass in one kernel"). numba is
imported, and the loop compiled or read from numba's on-disk cache, at the first call only: workers that never run
int8 never pay for it.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

log = logging.getLogger(__name__)

# states [rows, columns], keep [columns] (0 at the outlier columns, else 1), the outlier columns' indices, levels, then
# the outputs values [rows, columns] (uint8), scale [rows] and side [rows, count + 2]; all C-contiguous.
SIGNATURE = ("void(float32[:, ::1], float32[::1], int64[::1], int64, uint8[:, ::1], float32[::1], float32[:, ::1])")


def _quantize(states, keep, columns, levels, values, scale, side):  # pragma: no cover - runs compiled
    """Each row to 0..levels over its range outside the outlier columns, with its scale and the side GEMM's inputs."""
    # side[i] = [the outliers of row i / scale[i], 1 / scale[i], -zero point]. An outlier column reads as exactly 0
    # (times keep): it quantizes to the zero point, which its zero weight ignores, and the range always holds 0.
    # One row at a time: its second pass reads it from cache, where passes over the whole matrix each stream it
    # from memory (the bound for batches on a Zen 3 core: BENCHMARKS.md, "The quantization pass in one kernel").
    count, top = columns.shape[0], np.float32(levels)
    for i in range(states.shape[0]):
        high, low = np.float32(0.0), np.float32(0.0)
        for k in range(states.shape[1]):
            value = states[i, k] * keep[k]
            high, low = max(high, value), min(low, value)
        step = max((high - low) / top, np.float32(1e-12))
        inverse = np.float32(1.0) / step
        zero = np.float32(np.round(-low * inverse))
        shift = zero + np.float32(0.5)  # + 0.5, then the conversion's truncation: rounding in the same pass
        for k in range(states.shape[1]):
            values[i, k] = np.uint8(min(max(states[i, k] * keep[k] * inverse + shift, np.float32(0.0)), top))
        for j in range(count):
            side[i, j] = states[i, columns[j]] * inverse
        side[i, count] = inverse
        side[i, count + 1] = -zero
        scale[i] = step


@functools.cache
def quantize_kernel():
    """The compiled loop, from numba's on-disk cache where it has one, else compiled here."""
    # numba looks in NUMBA_CACHE_DIR, else beside this file, else the user's cache directory; loading takes about
    # 0.3 s, compiling 0.7.
    try:
        return numba_jit(cache=True)(_quantize)
    except RuntimeError as exc:  # no writable cache directory (a read-only file system): compile in this process
        log.info("numba cannot cache the int8 quantization loop (%s): compiled in this process", exc)
        return numba_jit()(_quantize)


def numba_jit(**options):
    """numba's eager compiler for the loop's signature."""
    import numba

    return numba.njit(SIGNATURE, nogil=True, boundscheck=False, **options)  # fastmath measured no faster
