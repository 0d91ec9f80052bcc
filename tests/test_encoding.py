"""Response encoding: dimensions, float JSON and base64 little-endian float32."""

import base64
import json

import numpy as np

from embedding_app.api.encoding import encode_base64, render_embeddings, shorten

VECTORS = np.array([[0.6, 0.8, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)


def test_shorten_truncates_then_renormalises():
    short = shorten(np.array([[0.5, 0.5, 0.5, 0.5]], dtype=np.float32), 2)
    assert np.allclose(short, [[2 ** -0.5, 2 ** -0.5]])


def test_shorten_without_dimensions_is_identity():
    assert shorten(VECTORS, None) is VECTORS


def test_base64_is_little_endian_float32_bytes():
    decoded = np.frombuffer(base64.b64decode(encode_base64(VECTORS[0])), dtype="<f4")
    assert decoded.tolist() == VECTORS[0].tolist()


def test_float_and_base64_bodies_carry_the_same_vectors():
    floats = json.loads(render_embeddings(VECTORS, "float", "m", 5))
    packed = json.loads(render_embeddings(VECTORS, "base64", "m", 5))
    for plain, b64 in zip(floats["data"], packed["data"]):
        assert np.array_equal(np.float32(plain["embedding"]), np.frombuffer(base64.b64decode(b64["embedding"]), "<f4"))
    assert floats["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    assert [item["index"] for item in floats["data"]] == [0, 1]
