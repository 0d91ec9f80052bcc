"""Shape embeddings for the response: shorten to `dimensions`, then float JSON or base64 float32."""

from __future__ import annotations

import base64

import numpy as np
import orjson


def shorten(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first `dimensions` values of each vector and scale it back to unit length."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    short = vectors[:, :dimensions]
    norms = np.linalg.norm(short, axis=1, keepdims=True)
    return np.ascontiguousarray(short / np.maximum(norms, 1e-12), dtype=np.float32)


def encode_base64(vector: np.ndarray) -> str:
    """The vector as base64 of its little-endian float32 bytes, as the OpenAI SDK decodes it."""
    return base64.b64encode(vector.astype("<f4", copy=False).tobytes()).decode("ascii")


def render_embeddings(vectors: np.ndarray, encoding_format: str, model: str, tokens: int) -> bytes:
    """The JSON body of an embeddings response; numpy rows are serialised by orjson without Python floats."""
    if encoding_format == "base64":
        values = [encode_base64(row) for row in vectors]
    else:
        values = list(vectors)
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": value} for i, value in enumerate(values)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
