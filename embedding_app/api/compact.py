"""Compact embedding types as Cohere answers them: int8, uint8, binary and ubinary (and base64 float32)."""

from __future__ import annotations

import numpy as np

from .encoding import encode_base64

# int8 = round(v * sqrt(dimensions) * INT8_SCALE) of the unit-length vector, clipped to -128..127. A unit vector's
# values spread about 1/sqrt(dimensions) around 0, so the range covers +-4 of those spreads; fixed, so int8 vectors
# of any request (or server) compare with each other. uint8 is the same plus 128.
INT8_SCALE = 32.0


def to_int8(vectors: np.ndarray) -> np.ndarray:
    """The fixed-range int8 form of float vectors (normalised first)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scaled = np.rint(unit * (np.sqrt(vectors.shape[1]) * INT8_SCALE))
    return np.clip(scaled, -128, 127).astype(np.int8)


def to_ubinary(vectors: np.ndarray) -> np.ndarray:
    """One bit per dimension (1 where the value is positive), packed 8 to a byte, first dimension highest."""
    return np.packbits(vectors > 0, axis=1)


def compact(vectors: np.ndarray, kind: str) -> list:
    """The vectors as one Cohere embedding type: lists of numbers, or base64 strings for base64."""
    if kind == "float":
        return list(vectors)
    if kind == "base64":
        return [encode_base64(row) for row in vectors]
    if kind in ("int8", "uint8"):
        values = to_int8(vectors).astype(np.int16)
        return list(values + 128 if kind == "uint8" else values)
    bits = to_ubinary(vectors).astype(np.int16)  # as sentence-transformers' quantize_embeddings: binary = ubinary - 128
    return list(bits - 128 if kind == "binary" else bits)
